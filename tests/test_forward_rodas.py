"""Forward sensitivities through Rodas4 (Rosenbrock stages of the augmented system).

References: central differences of tight-tolerance solves (DP8 for Lotka-Volterra, BDF for
Robertson), and, with the steps held fixed, central differences of Rodas4 solves that take
exactly the same steps: the sensitivities are the exact derivative of that discrete map.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from sensitivity.ode.problem import ODEProblem
from sensitivity.ode.solve import solve
from sensitivity.sens.forward import forward_sensitivity
from tests.forward_problems import LV_P, LV_T, fd_jacobian
from tests.rhs_suite import heat, lotka_volterra, robertson

ROBER_P = np.array([0.04, 1e4, 3e7])


def _lv(p=LV_P, y0=(1.0, 1.0), compile=True):
    return ODEProblem(lotka_volterra, list(y0), (0.0, 10.0), p, compile=compile)


@pytest.fixture(scope="module")
def lv_fd():
    return fd_jacobian(_lv, LV_P, LV_T, "DP8")


@pytest.mark.parametrize("error_control", ["full", "partial", "none"])
def test_lotka_volterra_against_finite_differences(lv_fd, error_control):
    fs = forward_sensitivity(
        _lv(), t_eval=LV_T, method="Rodas4", rtol=1e-9, atol=1e-11, error_control=error_control
    )
    assert fs.success and fs.method == "Rodas4"
    np.testing.assert_allclose(fs.dy_dp, lv_fd, atol=2e-6 * np.abs(lv_fd).max())


def test_partial_error_control_keeps_the_plain_steps(lv_fd):
    kw = dict(t_eval=LV_T, method="Rodas4", rtol=1e-6, atol=1e-8)
    plain = solve(_lv(), **kw)
    part = forward_sensitivity(_lv(), error_control="partial", **kw)
    full = forward_sensitivity(_lv(), **kw)
    assert part.stats["nsteps"] == plain.stats["nsteps"]
    np.testing.assert_allclose(part.y, plain.y, rtol=1e-12, atol=1e-12)
    assert full.stats["nsteps"] > plain.stats["nsteps"]
    err_full, err_part = (np.abs(fs.dy_dp - lv_fd).max() for fs in (full, part))
    assert err_full < 0.7 * err_part


def _fixed(make, q, ts, h):
    # rtol = atol = 1e10: every step of size h is accepted, whatever p is
    return solve(make(q), "Rodas4", ts, 1e10, 1e10, first_step=h, max_step=h)


@pytest.mark.parametrize("name", ["lotka_volterra", "robertson"])
def test_fixed_steps_give_the_exact_derivative_of_the_discrete_map(name):
    if name == "lotka_volterra":
        p0, y0, ts, h = LV_P, np.array([1.0, 1.0]), np.array([0.73, 2.0]), 0.05
        f = lotka_volterra
    else:
        # (larger fixed steps are unstable in the initial transient, as for the plain solve)
        p0, y0, ts, h = ROBER_P, np.array([1.0, 0.0, 0.0]), np.array([0.03, 0.1]), 1e-3
        f = robertson

    def make(q, y=y0):
        return ODEProblem(f, y, (0.0, ts[-1]), q)

    fs = forward_sensitivity(make(p0), t_eval=ts, wrt="both", method="Rodas4", rtol=1e10,
                             atol=1e10, first_step=h, max_step=h)  # fmt: skip
    plain = _fixed(make, p0, ts, h)
    assert fs.success and fs.stats["nsteps"] == plain.stats["nsteps"]
    # central differences with relative steps 1e-4: their round-off is ~1e-12 of |y|
    tol = dict(rtol=1e-7, atol=1e-9 * np.abs(plain.y).max())
    cols = []
    for j in range(p0.size):
        e = np.zeros(p0.size)
        e[j] = 1e-4 * abs(p0[j])
        cols.append((_fixed(make, p0 + e, ts, h).y - _fixed(make, p0 - e, ts, h).y) / (2 * e[j]))
    ref = np.stack(cols, -1) * np.abs(p0)  # per relative change of p_j
    got = fs.dy_dp * np.abs(p0)
    np.testing.assert_allclose(got, ref, **tol)
    if name == "robertson":
        return  # y0 perturbations of 1e-4 leave the fixed steps' stability region (y_1 ~ 1e-5)
    cols = []
    for j in range(y0.size):
        e = np.zeros(y0.size)
        e[j] = 1e-4
        hi = _fixed(lambda q: make(q, y0 + e), p0, ts, h).y
        lo = _fixed(lambda q: make(q, y0 - e), p0, ts, h).y
        cols.append((hi - lo) / 2e-4)
    np.testing.assert_allclose(fs.dy_dy0, np.stack(cols, -1), **tol)


def test_robertson_stiff_to_4e10():
    ts = 0.4 * 10.0 ** np.arange(0, 11)
    atol = np.array([1e-10, 1e-16, 1e-8])

    def make(q):
        return ODEProblem(robertson, [1.0, 0.0, 0.0], (0.0, 4e10), q)

    fs = forward_sensitivity(make(ROBER_P), t_eval=ts, method="Rodas4", rtol=1e-7, atol=atol)
    assert fs.success
    cols = []
    for j in range(3):  # relative steps: the parameters span 9 decades
        e = np.zeros(3)
        e[j] = 1e-5 * ROBER_P[j]
        hi = solve(make(ROBER_P + e), method="BDF", t_eval=ts, rtol=1e-11, atol=atol * 1e-4).y
        lo = solve(make(ROBER_P - e), method="BDF", t_eval=ts, rtol=1e-11, atol=atol * 1e-4).y
        cols.append((hi - lo) / (2 * e[j]))
    ref = np.stack(cols, -1) * ROBER_P  # dy / dlog p
    got = fs.dy_dp * ROBER_P
    np.testing.assert_allclose(got[:9], ref[:9], atol=1e-4 * np.abs(ref[:9]).max())


def test_plain_python_right_hand_side_gives_the_same_sensitivities():
    # compile=False: the kernel's Python twin on the nested numpy-level duals
    kw = dict(t_eval=[0.5, 1.0], method="Rodas4", rtol=1e-5, atol=1e-7, wrt="both")
    ref = forward_sensitivity(_lv(), **kw)
    fs = forward_sensitivity(_lv(compile=False), **kw)
    assert fs.success and fs.stats == ref.stats
    np.testing.assert_allclose(fs.dy_dp, ref.dy_dp, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fs.dy_dy0, ref.dy_dy0, rtol=1e-12, atol=1e-12)


def test_heat_lower_block_applied_stage_by_stage():
    # n = 8 > B_COLUMNS_MAX: B u_i from one second-order sweep per stage, not from a B
    # built per Jacobian (the small problems above take that path)
    from sensitivity.ode import rodas_sens

    n, ts, h = 8, np.array([0.02, 0.05]), 2.5e-3
    x = (np.arange(n) + 0.5) / n
    k0 = 1.0 + 0.5 * x

    def make(k, compile=True):
        return ODEProblem(heat, np.sin(np.pi * x), (0.0, 0.05), k, compile=compile)

    kw = dict(t_eval=ts, method="Rodas4", rtol=1e10, atol=1e10, first_step=h, max_step=h)
    fs = forward_sensitivity(make(k0), **kw)
    assert fs.success and n > rodas_sens.B_COLUMNS_MAX
    cols = []
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1e-4
        cols.append((_fixed(make, k0 + e, ts, h).y - _fixed(make, k0 - e, ts, h).y) / 2e-4)
    ref = np.stack(cols, -1)
    np.testing.assert_allclose(fs.dy_dp, ref, rtol=1e-7, atol=1e-9 * np.abs(ref).max())
    twin = forward_sensitivity(make(k0, compile=False), **kw)  # Python twin, numpy duals
    np.testing.assert_allclose(twin.dy_dp, fs.dy_dp, rtol=1e-12, atol=1e-13)


def test_patterned_problem_is_refused(patterned_lu):
    n = 6
    pattern = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(n, n), format="csr")
    prob = ODEProblem(heat, np.ones(n), (0.0, 0.1), np.ones(n), jac_sparsity=pattern)
    with pytest.raises(ValueError, match="Rodas4.*dense LU.*BDF"):
        forward_sensitivity(prob, method="Rodas4")
