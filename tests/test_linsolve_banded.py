"""The compiled banded LU and the stiff solvers, sensitivities and adjoints running on it."""

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from scipy.linalg.lapack import dgbtrf

import sensitivity as sn
from sensitivity.ad import nb
from sensitivity.ode import banded, linsolve
from tests.rhs_suite import heat

C = 0.7  # the factored matrix is I - C J

# (n, kl, ku): unequal bands, one-sided bands, n = 1, a band as wide as the matrix
SHAPES = [(1, 0, 0), (12, 1, 1), (17, 3, 1), (17, 1, 4), (15, 0, 3), (15, 3, 0), (6, 5, 5)]


def random_band(rng, n, kl, ku):
    """A dense (n, n) J with bandwidths (kl, ku) such that I - C J needs row interchanges."""
    A = rng.standard_normal((n, n))
    i, j = np.indices((n, n))
    A[(j - i > ku) | (i - j > kl)] = 0.0
    A[i == j] = rng.uniform(0.2, 0.5, n) * rng.choice([-1.0, 1.0], n)  # small: pivoting
    return (np.eye(n) - A) / C


def band_workspace(n, kl, ku, J):
    """Workspace of the banded layout with J's band in Jacobian storage."""
    Jb, M, piv = linsolve.workspace(n, linsolve.with_band(np.zeros(0), (kl, ku)))
    banded.band_from_dense(J, Jb, kl, ku)
    return Jb, M, piv


@pytest.mark.parametrize("n, kl, ku", SHAPES)
def test_banded_lu_matches_dense_and_lapack(n, kl, ku, rng):
    J = random_band(rng, n, kl, ku)
    A = np.eye(n) - C * J
    Jb, M, piv = band_workspace(n, kl, ku, J)
    assert Jb.shape == (n, kl + ku + 1) and M.shape == (n, 2 * kl + ku + 1)
    linsolve.factor(Jb, C, M, piv)
    # the same factors and pivots as LAPACK dgbtrf (its band storage is M transposed)
    ab = np.zeros((2 * kl + ku + 1, n))
    for j in range(n):
        for i in range(max(0, j - ku), min(n, j + kl + 1)):
            ab[kl + ku + i - j, j] = A[i, j]
    lu, ipiv, info = dgbtrf(ab, kl, ku)
    assert info == 0
    np.testing.assert_array_equal(piv[:n], ipiv)
    kv = kl + ku
    np.testing.assert_allclose(1.0 / M[:, kv], lu[kv], rtol=1e-12)  # 1 / U_jj kept
    M[:, kv] = lu[kv]
    np.testing.assert_allclose(M.T[kl:], lu[kl:], rtol=1e-12, atol=1e-12)
    M[:, kv] = 1.0 / lu[kv]
    if kl > 0 and n > 2:
        assert np.any(piv[:n] != np.arange(n))  # the matrices do need pivoting
    b = rng.standard_normal(n)
    x = np.empty(n)
    linsolve.solve_lu(M, piv, b, x)
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-10, atol=1e-12)
    ab_plain = ab[kl:]  # scipy's solve_banded: the (kl + ku + 1, n) storage
    np.testing.assert_allclose(
        x, scipy.linalg.solve_banded((kl, ku), ab_plain, b), rtol=1e-10, atol=1e-12
    )
    linsolve.solve_lu(M, piv, b, b)  # x may alias b
    np.testing.assert_array_equal(b, x)


def test_banded_lu_of_a_singular_matrix_gives_non_finite_solutions():
    n, kl, ku = 5, 1, 1
    J = np.zeros((n, n))
    J[2, 2] = 1.0 / C  # row 2 of I - C J vanishes
    Jb, M, piv = band_workspace(n, kl, ku, J)
    linsolve.factor(Jb, C, M, piv)
    x = np.empty(n)
    linsolve.solve_lu(M, piv, np.ones(n), x)
    assert not np.all(np.isfinite(x))  # Newton then fails and the step is retried


def test_transposed_band_storage(rng):
    n, kl, ku = 9, 2, 1
    J = random_band(rng, n, kl, ku)
    Jb, _, _ = band_workspace(n, kl, ku, J)
    JTb, _, pivT = band_workspace(n, ku, kl, np.zeros((n, n)))
    linsolve.transposed(Jb, JTb, pivT)
    ref, _, _ = band_workspace(n, ku, kl, J.T)
    np.testing.assert_array_equal(JTb, ref)


def brusselator(t, y, p, dydt):
    """1-D Brusselator, u and v interleaved (bandwidths 2 and 2), periodic in no direction."""
    n = y.shape[0] // 2
    a, b, alpha = p[0], p[1], p[2] * (n + 1) ** 2
    for i in range(n):
        u, v = y[2 * i], y[2 * i + 1]
        ul = y[2 * i - 2] if i > 0 else 1.0
        ur = y[2 * i + 2] if i < n - 1 else 1.0
        vl = y[2 * i - 1] if i > 0 else 3.0
        vr = y[2 * i + 3] if i < n - 1 else 3.0
        dydt[2 * i] = a + u * u * v - (b + 1.0) * u + alpha * (ul - 2.0 * u + ur)
        dydt[2 * i + 1] = b * u - u * u * v + alpha * (vl - 2.0 * v + vr)


def brusselator_problem(n):
    x = (np.arange(n // 2) + 1.0) / (n // 2 + 1)
    y0 = np.empty(n)
    y0[0::2] = 1.0 + np.sin(2 * np.pi * x)
    y0[1::2] = 3.0
    return sn.ODEProblem(brusselator, y0, (0.0, 2.0), [1.0, 3.0, 0.02])


def heat_problem(n, param_pattern=True):
    x = (np.arange(n) + 0.5) / n
    pattern = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(n, n), format="csr")
    k = 1.0 + 0.5 * np.sin(2 * np.pi * x)
    u0 = np.sin(np.pi * x) + 0.5 * np.sin(3 * np.pi * x)
    ps = pattern if param_pattern else False
    return sn.ODEProblem(heat, u0, (0.0, 0.05), k, jac_sparsity=pattern, param_sparsity=ps)


@pytest.fixture
def dense_lu(monkeypatch):
    """Switch the banded path off: compiled dense LU at every n (the reference)."""

    def use():
        monkeypatch.setattr(linsolve, "MAX_BAND", -1)
        monkeypatch.setattr(linsolve, "DENSE_LU_MAX", 10**9)

    return use


@pytest.mark.parametrize("compile", [True, False])
def test_band_jacobian_kernel_matches_dense_jacobian(compile):
    prob = brusselator_problem(64)
    assert linsolve.band(prob) == (2, 2)
    kl, ku = 2, 2
    J = prob.jacobian(0.3, prob.y0 + 0.1).toarray()
    if compile:
        kern = linsolve.band_jacobian(prob, kl, ku)
    else:  # the same template as plain Python on the numpy-level duals
        kern = nb.make_kernel(banded.band_jac_template, nb._py_func(prob.rhs_kernel), 8, False)
    Jb = np.zeros((prob.n, kl + ku + 1))
    kern(0.3, prob.y0 + 0.1, prob.p, Jb)
    ref = np.zeros_like(Jb)
    banded.band_from_dense(J, ref, kl, ku)
    np.testing.assert_allclose(Jb, ref, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("n", [64, 200])
@pytest.mark.parametrize("method", ["BDF", "ESDIRK", "Rodas4"])
@pytest.mark.parametrize("problem", ["heat", "brusselator"])
def test_banded_solves_equal_dense_lu_solves(problem, n, method, dense_lu):
    if problem == "heat":
        prob, t_eval = heat_problem(n), [0.01, 0.05]
    else:
        prob, t_eval = brusselator_problem(n), [1.0, 2.0]
    solver = sn.Solver(prob, method, t_eval, 1e-6, 1e-9)
    assert solver.band == ((1, 1) if problem == "heat" else (2, 2))  # compiled banded path
    band = solver()
    dense_lu()
    dense = sn.solve(prob, method, t_eval, 1e-6, 1e-9)
    assert band.success and dense.success
    # the same steps; nlu may differ (ESDIRK keeps its LU while the step ratio stays in a
    # window, and a ratio at the window's edge can round either way)
    same = ("nsteps", "nreject", "nfev", "njev")
    assert [band.stats[k] for k in same] == [dense.stats[k] for k in same]
    np.testing.assert_allclose(band.y, dense.y, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("method", ["BDF", "Rodas4"])
def test_banded_solves_at_n_1024_equal_lapack_band_solves(method, monkeypatch):
    """At n = 1024 against the Python-level LAPACK ``dgbtrf`` path (Rodas4 factors at every
    step: a dense LU each time would take long; BDF against the dense LU below)."""
    prob = brusselator_problem(1024)
    band = sn.solve(prob, method, [1.0, 2.0], 1e-6, 1e-9)
    monkeypatch.setattr(linsolve, "band", lambda prob: None)  # the Python twin, BANDED
    lapack = sn.solve(prob, method, [1.0, 2.0], 1e-6, 1e-9)
    assert band.success and band.stats == lapack.stats
    np.testing.assert_allclose(band.y, lapack.y, rtol=1e-11, atol=1e-13)


def test_banded_solve_at_n_1024_equals_dense_lu_solve(dense_lu):
    prob = heat_problem(1024)
    band = sn.solve(prob, "BDF", [0.01, 0.05], 1e-6, 1e-9)
    dense_lu()
    dense = sn.solve(prob, "BDF", [0.01, 0.05], 1e-6, 1e-9)
    assert band.success and band.stats["nsteps"] == dense.stats["nsteps"]
    assert band.stats["nfev"] == dense.stats["nfev"]
    np.testing.assert_allclose(band.y, dense.y, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("method", ["BDF", "ESDIRK"])
def test_forward_sensitivities_on_the_banded_path(method, dense_lu):
    prob = heat_problem(64)
    kw = dict(t_eval=[0.01, 0.05], method=method, rtol=1e-8, atol=1e-10, wrt="both")
    if method == "ESDIRK":  # second order: fewer columns at a looser tolerance keep it fast
        kw.update(rtol=1e-7, wrt="p")
    fs = sn.forward_sensitivity(prob, **kw)
    h = 1e-6  # central differences in p_7 and y0_20, at tight tolerances
    e = np.zeros(prob.n)
    e[7] = h
    run = sn.Solver(prob, "BDF", kw["t_eval"], 1e-11, 1e-13)  # (TR-BDF2 is 2nd order)
    fd_p = (run(p=prob.p + e).y - run(p=prob.p - e).y) / (2 * h)
    fd_y = (run(y0=prob.y0 + np.roll(e, 13)).y - run(y0=prob.y0 - np.roll(e, 13)).y) / (2 * h)
    np.testing.assert_allclose(fs.dy_dp[:, :, 7], fd_p, atol=1e-5 * np.abs(fd_p).max())
    if method == "BDF":
        np.testing.assert_allclose(fs.dy_dy0[:, :, 20], fd_y, atol=1e-5 * np.abs(fd_y).max())
    dense_lu()
    ref = sn.forward_sensitivity(prob, **kw)
    np.testing.assert_allclose(fs.dy_dp, ref.dy_dp, rtol=1e-10, atol=1e-13)
    if method == "BDF":
        np.testing.assert_allclose(fs.dy_dy0, ref.dy_dy0, rtol=1e-10, atol=1e-13)


def _adjoint(prob):
    ts = np.array([0.0, 0.013, 0.05])
    obj = sn.L2Misfit(ts, np.full((3, 3), 0.3), observe=[1, prob.n // 2, prob.n - 2])
    return sn.adjoint_gradient(prob, obj, kind="discrete", method="BDF", rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("param_pattern", [True, False])
def test_bdf_adjoint_on_the_banded_path_equals_dense(param_pattern, dense_lu):
    prob = heat_problem(40, param_pattern)
    band = _adjoint(prob)
    dense_lu()
    dense = _adjoint(prob)
    assert band.stats["nsteps"] == dense.stats["nsteps"]
    np.testing.assert_allclose(band.grad_p, dense.grad_p, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(band.grad_y0, dense.grad_y0, rtol=1e-11, atol=1e-15)


def test_bdf_adjoint_at_n_300_equals_python_sweep_and_directional_differences(monkeypatch):
    prob = heat_problem(300)
    r = _adjoint(prob)
    dk = np.random.default_rng(5).standard_normal(prob.n)
    h = 1e-6

    def value(k):
        q = sn.ODEProblem(heat, prob.y0, prob.t_span, k, jac_sparsity=prob.jac_sparsity,
                          param_sparsity=prob.param_sparsity)  # fmt: skip
        return _adjoint(q).value

    fd = (value(prob.p + h * dk) - value(prob.p - h * dk)) / (2 * h)
    # adaptive steps: differences of the solutions agree to about the tolerance only (the
    # exact check at fixed steps, banded path included, is in test_adjoint_bdf.py)
    assert abs(r.grad_p @ dk - fd) < 1e-4 * np.abs(r.grad_p).sum()
    monkeypatch.setattr(linsolve, "band", lambda prob: None)  # the Python-level sweep
    ref = _adjoint(prob)
    np.testing.assert_allclose(r.grad_p, ref.grad_p, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(r.grad_y0, ref.grad_y0, rtol=1e-10, atol=1e-15)


def test_wide_patterns_keep_the_sparse_path():
    n = 150
    S = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(n, n), format="lil")
    S[0, n - 1] = S[n - 1, 0] = 1.0  # a periodic coupling: bandwidth n - 1
    prob = sn.ODEProblem(heat, np.ones(n), (0.0, 0.01), np.ones(n), jac_sparsity=S.tocsr())
    assert linsolve.band(prob) is None and linsolve.sparse_lu(prob)
    assert linsolve.choose(prob.jac_sparsity) is linsolve.SPARSE
    assert sn.Solver(prob, "BDF").band is None


@pytest.mark.parametrize("n, kl, ku", SHAPES)
@pytest.mark.parametrize("K", [1, 3, 8])
@pytest.mark.parametrize("layout", ["dense", "banded", "banded LAPACK (Python)"])
def test_block_solve_is_bitwise_the_column_solves(n, kl, ku, K, layout, rng):
    # solve_lu_block solves the K columns of a row-major (n, K) block together; per column
    # it must give exactly solve_lu's bits, and solve the system
    J = random_band(rng, n, kl, ku)
    if layout == "dense":
        Jw, M, piv = linsolve.workspace(n, linsolve.with_band(np.zeros(0)))
        Jw[:] = J
        solve, block = linsolve.solve_lu, linsolve.solve_lu_block
    elif layout == "banded":
        Jw, M, piv = band_workspace(n, kl, ku, J)
        solve, block = linsolve.solve_lu, linsolve.solve_lu_block
    else:
        Jw = linsolve.banded_jacobian(lambda t, y: sp.coo_matrix(J), 0.0, None, None, None)
        M, piv = None, None
        solve, block = linsolve.BANDED["solve_lu"], linsolve.BANDED["solve_lu_block"]
    if layout == "banded LAPACK (Python)":
        M = linsolve.BANDED["factor"](Jw, C, None, None)
    else:
        M = linsolve.factor(Jw, C, M, piv)
    B = rng.standard_normal((n, K))
    X = B.ravel().copy()
    block(M, piv, X, K, np.empty(n))
    for k in range(K):
        x = np.empty(n)
        solve(M, piv, B[:, k].copy(), x)
        assert np.array_equal(X.reshape(n, K)[:, k], x)
    A, X = np.eye(n) - C * J, X.reshape(n, K)
    scale = (np.abs(A) @ np.abs(X)).max()  # LU's backward error is relative to |A| |X|
    np.testing.assert_allclose(A @ X, B, rtol=0, atol=1e-13 * scale)
