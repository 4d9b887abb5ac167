"""2-D acoustic waves: accuracy, exact discrete adjoints, checkpointing, memory."""

import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

from sensitivity.ad.dual import Dual
from sensitivity.pde.boundary import sponge
from sensitivity.pde.fwi import camembert
from sensitivity.pde.points import inject_values, point_set, sample_field
from sensitivity.pde.reference import forward_numpy
from sensitivity.pde.wave import Acoustic2D, cfl_dt, free_workspace, ricker
from sensitivity.sens import checkpoint as cp
from sensitivity.testing import dot_product_test, taylor_test


def make_setup(shape=(40, 36), h=10.0, nt=120, nbl=8, f0=15.0, n_rec=11):
    sp = (h, h)
    dt = cfl_dt(sp, 3500.0)
    lx, lz = (shape[0] - 1) * h, (shape[1] - 1) * h
    src = point_set([[0.243 * lx, 0.523 * lz]], shape, sp)
    rec = point_set(
        np.c_[np.full(n_rec, 0.77 * lx), np.linspace(0.26, 0.74, n_rec) * lz], shape, sp
    )
    setup = Acoustic2D(shape, sp, dt, nt, sponge(shape, nbl, sp, 3500.0), src, rec)
    q = 1e3 * ricker(np.arange(nt) * dt, f0, 1.0 / f0)[:, None]
    return setup, q


@pytest.fixture
def small(rng):
    setup, q = make_setup()
    m = 1.0 / (2500.0 + 300.0 * rng.random(setup.shape)) ** 2
    return setup, q, m


def test_compiled_kernels_match_numpy_reference(small):
    setup, q, m = small
    d = setup.forward(m, q)
    ref = forward_numpy(setup, m, q)
    assert np.abs(d).max() > 0
    np.testing.assert_allclose(d, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_sampling_and_injection_are_adjoint(rng):
    shape, sp = (13, 9), (7.0, 5.0)
    pts = point_set(rng.uniform(0, 1, (6, 2)) * [84.0, 40.0], shape, sp)
    res = dot_product_test(
        lambda u: sample_field(u, pts), lambda d: inject_values(d, pts, shape), shape_in=shape
    )
    assert res.passed and res.rel_error < 1e-13
    # bilinear sampling reproduces linear fields exactly
    x = np.arange(shape[0])[:, None] * sp[0] + 0 * np.arange(shape[1])[None, :]
    np.testing.assert_allclose(sample_field(x, pts), pts.positions[:, 0], rtol=1e-14)


def test_modelling_operator_dot_product(small):
    setup, q, m = small
    res = dot_product_test(
        lambda s: setup.forward(m, s), lambda r: setup.adjoint_source(m, r), shape_in=q.shape
    )
    assert res.rel_error < 1e-12


def test_jacobian_and_gradient_are_transposes(small, rng):
    """<J dm, w> = <dm, J^T w>: tangent-linear model vs the adjoint imaging."""
    setup, q, m = small
    dm = rng.standard_normal(setup.shape) * m.mean()
    w = rng.standard_normal((setup.nt, setup.receivers.n))
    d0 = np.zeros((setup.nt, setup.receivers.n))
    res = dot_product_test(
        lambda x: setup.born(m, q, x)[1],
        lambda y: setup.gradient(m, q, d0, residual=y).grad,
        v=dm,
        w=w,
    )
    assert res.rel_error < 1e-12


def test_gradient_matches_dual_number_directional_derivative(rng):
    """The adjoint gradient against forward-mode duals through the numpy scheme."""
    setup, q = make_setup(shape=(18, 16), nt=50, nbl=4)
    m = 1.0 / (2500.0 + 200.0 * rng.random(setup.shape)) ** 2
    d_obs = setup.forward(np.full(setup.shape, 1 / 2600.0**2), q)
    dm = rng.standard_normal(setup.shape) * m.mean()
    d = forward_numpy(setup, Dual(m, dm[..., None]), q)
    dual_dir = float(np.sum((d.val - d_obs) * d.eps[..., 0]))
    grad = setup.gradient(m, q, d_obs).grad
    assert np.sum(grad * dm) == pytest.approx(dual_dir, rel=1e-10)
    # and the compiled tangent-linear model agrees with the duals
    _, dd = setup.born(m, q, dm)
    np.testing.assert_allclose(dd, d.eps[..., 0], rtol=0, atol=1e-10 * np.abs(dd).max())


def test_fwi_velocity_gradient_taylor(rng):
    problem, v_true, v0 = camembert(
        shape=(21, 21), spacing=(50.0, 50.0), nbl=8, t_end=0.6, n_sources=2, n_receivers=11
    )
    d_obs = problem.modelled_data(v_true)
    value, grad, _ = problem.misfit_gradient(v0, d_obs)
    dv = 100.0 * rng.standard_normal(problem.shape)
    res = taylor_test(lambda v: problem.misfit_gradient(v, d_obs)[0], v0, grad, direction=dv)
    assert res.passed, res.rates
    # the same objective through a concurrent.futures-style executor
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as ex:
        v2, g2, _ = problem.misfit_gradient(v0, d_obs, executor=ex)
    assert v2 == value and np.array_equal(g2, grad)


def test_model_extension_adjoint():
    problem, _, v0 = camembert(shape=(11, 9), spacing=(50.0, 50.0), nbl=3, t_end=0.1)
    E = problem.extend(np.ones(problem.shape))
    assert E.shape == problem.comp_shape and np.all(E == 1)
    rng = np.random.default_rng(3)
    v = 1000 + rng.random(problem.shape)  # extend checks v > 0
    g = rng.standard_normal(problem.comp_shape)
    lhs = np.sum(problem.extend(v) * g) - np.sum(problem.extend(np.full(v.shape, 1000.0)) * g)
    rhs = np.sum((v - 1000.0) * problem.extend_adjoint(g))
    assert lhs == pytest.approx(rhs, rel=1e-9)


@pytest.mark.parametrize(
    "schedule", [cp.binomial(120, 2), cp.binomial(120, 9), cp.fixed_interval(120, 11)]
)
def test_checkpointed_gradient_is_bitwise_store_all(small, schedule):
    setup, q, m = small
    d_obs = setup.forward(np.full(setup.shape, m.mean()), q)
    ref = setup.gradient(m, q, d_obs)
    got = setup.gradient(m, q, d_obs, schedule=schedule)
    assert np.array_equal(got.grad, ref.grad) and got.value == ref.value
    assert got.stats["forward_steps"] == schedule.forward_steps


@pytest.mark.parametrize("nt", [2, 3, 4, 25, 26])
def test_store_all_image_pairs_for_either_parity(nt, rng):
    # the store-all reverse pass adds its imaging terms two steps at a time (one alone
    # when their number, nt - 1, is odd); the gradient must stay bitwise the
    # checkpointed one, which adds one term per reversed step, and pass the dot-product
    # test against the tangent-linear model
    setup, q = make_setup(shape=(16, 14), nt=nt, nbl=3)
    m = 1.0 / (2500.0 + 300.0 * rng.random(setup.shape)) ** 2
    d_obs = setup.forward(np.full(setup.shape, m.mean()), q)
    ref = setup.gradient(m, q, d_obs)
    got = setup.gradient(m, q, d_obs, schedule=cp.binomial(nt, 1))
    assert np.array_equal(got.grad, ref.grad) and got.value == ref.value
    dm = rng.standard_normal(setup.shape)
    r = rng.standard_normal((nt, setup.receivers.n))
    _, dd = setup.born(m, q, dm)
    back = setup.gradient(m, q, d_obs, residual=r).grad
    lhs, rhs = np.sum(dd * r), np.sum(dm * back)
    assert lhs == pytest.approx(rhs, rel=1e-11, abs=1e-300)
    assert abs(lhs) > 0 or nt < 20  # (a few steps do not reach the receivers)


@pytest.mark.parametrize("shape", [(17, 13), (11, 10), (23, 15), (7, 5)])
def test_store_all_sweeps_with_a_remainder(shape, rng):
    # the store-all sweeps run in lanes of eight and finish n = nx (nz + 4) % 8 nodes in
    # scalar code (here 1, 2, 5, 7 of them); the gradient must stay bitwise that of the
    # checkpointed path, whose sweeps are scalar loops
    setup, q = make_setup(shape=shape, nt=40, nbl=2, n_rec=3)
    assert setup.shape[0] * (setup.shape[1] + 4) % 8 == {17: 1, 11: 2, 23: 5, 7: 7}[shape[0]]
    m = 1.0 / (2500.0 + 300.0 * rng.random(setup.shape)) ** 2
    d_obs = setup.forward(np.full(setup.shape, m.mean()), q)
    ref = setup.gradient(m, q, d_obs, schedule=cp.binomial(setup.nt, 2))
    got = setup.gradient(m, q, d_obs, workspace=False)
    assert np.abs(ref.grad).max() > 0
    assert np.array_equal(got.grad, ref.grad) and got.value == ref.value


def test_peak_memory_under_budget(rng):
    setup, q = make_setup(shape=(60, 60), nt=400, nbl=10)
    m = np.full(setup.shape, 1 / 2500.0**2)
    d_obs = setup.forward(m * 1.05, q)
    store_all = setup.nt * setup.wavefield_bytes
    budget = store_all // 4
    ref = setup.gradient(m, q, d_obs)
    setup.gradient(m, q, d_obs, memory_budget=budget)  # compile (or load) outside the trace
    tracemalloc.start()
    try:
        res = setup.gradient(m, q, d_obs, memory_budget=budget)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.stats["schedule"].startswith("binomial")
    assert peak <= budget, (peak, budget)
    assert res.stats["recompute_factor"] > 1.0
    assert np.array_equal(res.grad, ref.grad)
    # store-all needs more than the budget: the test measures something
    tracemalloc.start()
    try:
        setup.gradient(m, q, d_obs, workspace=False)  # a fresh store, as on a first call
        _, peak_all = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_all > 2 * budget


def test_store_all_workspace_is_kept_and_freed(small):
    """The default store-all gradient reuses one store between calls until it is freed."""
    setup, q, m = small
    d_obs = setup.forward(np.full(setup.shape, m.mean()), q)
    free_workspace()
    ref = setup.gradient(m, q, d_obs, workspace=False)

    def traced_peak(**kw):
        tracemalloc.start()
        try:
            res = setup.gradient(m, q, d_obs, **kw)
            return res, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    first, peak_first = traced_peak()  # allocates the shared store
    again, peak_again = traced_peak()  # reuses it
    store = ref.stats["stored_bytes"]
    assert peak_first > store > 4 * peak_again
    ws = {}
    mine, _ = traced_peak(workspace=ws)  # a caller-held store instead
    assert ws["store"].nbytes == store
    free_workspace()
    _, peak_freed = traced_peak()
    assert peak_freed > store
    for res in (first, again, mine):
        assert np.array_equal(res.grad, ref.grad) and res.value == ref.value
    # the images go to the store with non-temporal stores only when its rows start on
    # 64-byte lines (whole rows of 8 values); a store that does not (here one a caller
    # left in the workspace) takes plain stores, with the same gradient
    assert ws["store"].ctypes.data % 64 == 0 and ws["store"].shape[1] % 8 == 0
    shifted = np.empty(ws["store"].size + 1)[1:].reshape(ws["store"].shape)
    assert shifted.ctypes.data % 64 != 0
    ws["store"] = shifted
    odd = setup.gradient(m, q, d_obs, workspace=ws)
    assert ws["store"] is shifted
    assert np.array_equal(odd.grad, ref.grad) and odd.value == ref.value


def greens_2d(r, t, c, w):
    """Analytic solution of m u_tt - lap u = w(t) delta(x) in 2-D, m = 1/c^2.

    u = (G * w)(t) c^2 with G = H(ct - r) / (2 pi c sqrt(c^2 t^2 - r^2));
    with t' = (r/c) cosh(theta) the integral is smooth:
    u(r, t) = 1/(2 pi) int_0^inf w(t - (r/c) cosh(theta)) dtheta.
    """
    theta = np.linspace(0.0, 8.0, 20001)
    vals = w(t[:, None] - (r / c) * np.cosh(theta)[None, :])
    return np.trapezoid(vals, theta, axis=1) / (2 * np.pi)


def _trace_errors(h, offsets=(150.0, 300.0), c=2000.0, f0=10.0):
    """Relative L2 error of traces at ``offsets`` from a point source, before any
    reflection from the sponge can return (1.6 km square, 0.4 s)."""
    nbl = 20
    n = int(round(1600.0 / h)) + 1 + 2 * nbl
    shape, sp = (n, n), (h, h)
    dt = cfl_dt(sp, c, safety=0.5)
    nt = int(0.4 / dt)
    ctr = (n - 1) * h / 2
    offsets = np.asarray(offsets)
    src = point_set([[ctr, ctr]], shape, sp)
    rec = point_set(np.c_[ctr + offsets, np.full(offsets.size, ctr)], shape, sp)
    setup = Acoustic2D(shape, sp, dt, nt, sponge(shape, nbl, sp, c), src, rec)
    t = np.arange(nt) * dt
    w = lambda s: ricker(s, f0, 1.0 / f0)  # noqa: E731
    d = setup.forward(np.full(shape, 1 / c**2), w(t)[:, None])
    refs = [greens_2d(r, t, c, w) for r in offsets]
    return np.array(
        [np.linalg.norm(d[:, k] - ref) / np.linalg.norm(ref) for k, ref in enumerate(refs)]
    )


def test_dispersion_against_analytic_greens_function():
    """Homogeneous 2 km/s, 10 Hz Ricker: 10 points per wavelength at the peak."""
    e10 = _trace_errors(10.0)
    e20 = _trace_errors(20.0)
    assert np.all(e10 < 0.01), e10  # measured 0.2 % and 0.4 %
    assert e20[1] / e10[1] > 3.0, (e20, e10)  # converges (measured ratio 4)


def test_energy_decays_in_sponge():
    c, h, nbl = 2000.0, 10.0, 30
    shape, sp = (101, 101), (h, h)
    dt = cfl_dt(sp, c)
    nt = int(1.2 / dt)
    ctr = 50 * h
    src = point_set([[ctr, ctr]], shape, sp)
    rec = point_set([[ctr, ctr]], shape, sp)
    q = ricker(np.arange(nt) * dt, 10.0, 0.1)[:, None]
    m = np.full(shape, 1 / c**2)

    def energy(sigma):
        setup = Acoustic2D(shape, sp, dt, nt, sigma, src, rec)
        _, u = setup.forward(m, q, save=True)
        ut = np.diff(u, axis=0) / dt
        ux, uz = np.gradient(u[1:], h, axis=(1, 2))
        return 0.5 * np.sum(m * ut**2 + ux**2 + uz**2, axis=(1, 2))

    e = energy(sponge(shape, nbl, sp, c))
    e_rigid = energy(np.zeros(shape))
    # After the wave reaches the layer (r = 200 m at 0.1 s + 0.1 s delay), energy leaves.
    assert e[-1] < 1e-3 * e.max()
    # without the sponge the box keeps it (the test can fail)
    assert e_rigid[-1] > 0.5 * e_rigid.max()


def test_kernels_run_without_jit():
    code = textwrap.dedent(
        """
        import numpy as np
        import numba
        assert numba.config.DISABLE_JIT
        from sensitivity.pde.fwi import camembert
        p, vt, v0 = camembert(shape=(9, 9), spacing=(100., 100.), nbl=2, t_end=0.15,
                              n_sources=1, n_receivers=3)
        d = p.modelled_data(vt)
        val, g, _ = p.misfit_gradient(v0, d)
        s = p.shot(0)
        m = p.extend(v0) ** -2.0
        s.born(m, p.wavelet[:, None], m)
        s.adjoint_source(m, d[0])
        from sensitivity.sens.checkpoint import binomial
        q = p.wavelet[:, None]
        ref = s.gradient(m, q, d[0] * 0.5)
        ck = s.gradient(m, q, d[0] * 0.5, schedule=binomial(s.nt, 3))
        assert np.array_equal(ref.grad, ck.grad)
        print(val > 0, np.isfinite(g).all(), np.abs(g).max() > 0)
        """
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]


def test_bad_input(small):
    setup, q, m = small
    with pytest.raises(ValueError, match="m must have shape"):
        setup.forward(m[:-1], q)
    with pytest.raises(ValueError, match="positive"):
        setup.forward(-m, q)
    with pytest.raises(ValueError, match="q must have shape"):
        setup.forward(m, q[:-1])
    with pytest.raises(ValueError, match="d_obs must have shape"):
        setup.gradient(m, q, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="outside the grid"):
        point_set([[1e6, 0.0]], setup.shape, setup.spacing)
    with pytest.raises(ValueError, match="memory_budget"):
        setup.gradient(m, q, setup.forward(m, q), memory_budget=1000)
    with pytest.raises(ValueError, match="steps"):
        setup.gradient(m, q, setup.forward(m, q), schedule=cp.binomial(7, 2))
    from dataclasses import replace

    online = replace(cp.binomial(setup.nt, 3), initial=(0,))
    with pytest.raises(ValueError, match="start from stored checkpoints"):
        setup.gradient(m, q, setup.forward(m, q), schedule=online)
    problem, _, v0 = camembert(shape=(11, 11), spacing=(50.0, 50.0), nbl=3, t_end=0.1)
    with pytest.raises(ValueError, match="v_max"):
        problem.modelled_data(v0 * 2)
    from dataclasses import replace

    with pytest.raises(ValueError, match="CFL"):
        replace(problem, dt=problem.dt * 2)
    with pytest.raises(ValueError, match="wavelet"):
        replace(problem, wavelet=problem.wavelet[:-1])
