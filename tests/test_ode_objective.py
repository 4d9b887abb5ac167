"""ODE experiments as objectives: fits, uncertainty, caching, sums, executors."""

import numpy as np
import pytest
import scipy.sparse as sp

import sensitivity as sn
from sensitivity.testing import check_derivative, taylor_test
from tests.rhs_suite import lotka_volterra, robertson

P0 = np.array([1.5, 1.0, 3.0, 1.0])
TS = np.linspace(0.5, 10.0, 20)


def lv_data(seed, sigma=0.05, p=P0):
    prob = sn.ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), p)
    y = sn.solve(prob, method="Tsit5", t_eval=TS, rtol=1e-10, atol=1e-12).y
    return y + sigma * np.random.default_rng(seed).standard_normal(y.shape)


def lv_objective(data, **kw):
    prob = sn.ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), P0 * 0.9)
    return sn.Objective(prob, sn.L2Misfit(TS, data), method="Tsit5", rtol=1e-8, atol=1e-10, **kw)


def test_derivatives_of_the_experiment_objective():
    obj = lv_objective(lv_data(0), fit_y0=True)
    x = np.concatenate([P0 * 1.05, [1.02, 0.97]])
    assert check_derivative(obj.residuals, x, obj.residual_jac(x), method="fd", rtol=1e-5).passed
    assert taylor_test(obj.fun, x, obj.jac(x), eps0=1e-3).min_rate > 1.8


def test_lotka_volterra_recovery_and_both_scipy_routes():
    obj = lv_objective(lv_data(1))
    bounds = (0.1 * P0, 10 * P0)  # keeps the line search in the model's valid range
    ls = sn.fit(obj, P0 * 0.9, bounds=bounds, progress=False)
    mn = sn.fit(
        obj, P0 * 0.9, method="L-BFGS-B", bounds=bounds, progress=False, ftol=1e-11, gtol=1e-8
    )
    assert ls.success and mn.success
    np.testing.assert_allclose(mn.x, ls.x, rtol=1e-4)
    assert np.all(np.abs(ls.x - P0) < 4 * ls.stderr)


@pytest.mark.slow
@pytest.mark.ci
def test_lotka_volterra_covariance_against_monte_carlo():
    fits = [sn.fit(lv_objective(lv_data(s)), P0, progress=False).x for s in range(60)]
    spread = np.std(fits, axis=0, ddof=1)
    r = sn.fit(lv_objective(lv_data(999)), P0, progress=False)
    # 60 draws: the sample std is known to ~10%; allow 35%
    np.testing.assert_allclose(r.stderr, spread, rtol=0.35)


def test_value_gradient_and_jacobian_share_one_solve():
    obj = lv_objective(lv_data(2))
    x = P0 * 1.1
    obj.fun_and_jac(x)
    obj.residuals(x)
    obj.residual_jac(x)
    obj.fun(x)
    assert obj.nsolves == 1


def test_robertson_log_parameters():
    p_true = np.array([0.04, 1e4, 3e7])
    ts = 0.4 * 10.0 ** np.arange(-2, 6)
    prob = sn.ODEProblem(robertson, [1.0, 0.0, 0.0], (0.0, 4e5), p_true)
    y = sn.solve(prob, method="BDF", t_eval=ts, rtol=1e-9, atol=np.array([1e-12, 1e-18, 1e-10])).y
    rng = np.random.default_rng(3)
    sigma = 0.01 * np.abs(y) + 1e-12
    data = y + sigma * rng.standard_normal(y.shape)
    obj = sn.Objective(
        prob,
        sn.L2Misfit(ts, data, weights=1 / sigma**2),
        method="BDF",
        rtol=1e-8,
        atol=np.array([1e-11, 1e-17, 1e-9]),
    )
    obj.with_transform(sn.Log())
    r = sn.fit(obj, p_true * np.array([2.0, 0.5, 3.0]), progress=False)
    assert r.success
    np.testing.assert_allclose(r.x, p_true, rtol=0.1)
    assert np.all(np.abs(np.log(r.x / p_true)) < 4 * r.stderr / r.x)


def diffusion(t, y, p, dydt):
    # u_t = d/dx(k du/dx) on cells, u = 0 at both ends, harmonic-mean face conductivity
    n = len(y)
    h = 1.0 / n
    for i in range(n):
        kl = 2.0 * p[i] * p[i - 1] / (p[i] + p[i - 1]) if i > 0 else 2.0 * p[i]
        kr = 2.0 * p[i] * p[i + 1] / (p[i] + p[i + 1]) if i < n - 1 else 2.0 * p[i]
        ul = y[i - 1] if i > 0 else 0.0
        ur = y[i + 1] if i < n - 1 else 0.0
        dydt[i] = (kr * (ur - y[i]) - kl * (y[i] - ul)) / (h * h)


@pytest.mark.slow
@pytest.mark.ci
def test_diffusion_field_with_tikhonov_regularisation():
    n = 64
    x = (np.arange(n) + 0.5) / n
    k_true = 1.0 + 0.5 * np.sin(2 * np.pi * x)
    u0 = np.sin(np.pi * x) + 0.5 * np.sin(3 * np.pi * x)
    pattern = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(n, n), format="csr")
    ts = 0.005 * np.arange(1, 21)
    truth = sn.ODEProblem(
        diffusion, u0, (0.0, 0.1), k_true, jac_sparsity=pattern, param_sparsity=pattern
    )
    sensors = np.searchsorted(np.linspace(0, 1, n + 1), [0.1, 0.3, 0.5, 0.7, 0.9]) - 1
    y = sn.solve(truth, method="BDF", t_eval=ts, rtol=1e-10, atol=1e-12).y[:, sensors]
    data = y + 1e-4 * np.random.default_rng(4).standard_normal(y.shape)
    # stiff: BDF with a dense compiled LU (64 cells) and forward sensitivities in chunks
    # of 8 (an explicit method's discrete derivative is unstable at its stability limit)
    prob = sn.ODEProblem(diffusion, u0, (0.0, 0.1), np.ones(n), jac_sparsity=False)
    misfit = sn.Objective(
        prob,
        sn.L2Misfit(ts, data, observe=sensors, weights=1e8),
        method="BDF",
        rtol=1e-6,
        atol=1e-8,
    )
    obj = misfit + sn.Tikhonov(n, order=2, weight=1e-4, spacing=1.0 / n)
    r = sn.fit(obj, np.ones(n), method="L-BFGS-B", progress=False, maxiter=40, bounds=(0.2, 5.0))
    start = np.linalg.norm(np.ones(n) - k_true)
    assert np.linalg.norm(r.x - k_true) < 0.5 * start
    assert obj.fun(r.x_opt) < 0.05 * obj.fun(np.ones(n))


def test_dask_cluster_gives_the_serial_objective():
    distributed = pytest.importorskip("distributed")
    parts = [lv_objective(lv_data(s), name=f"run {s}") for s in range(3)]
    serial = sn.SumObjective(parts)
    x = P0 * 1.05
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        par = sn.SumObjective(
            [lv_objective(lv_data(s), name=f"run {s}") for s in range(3)], executor=client
        )
        np.testing.assert_allclose(par.fun(x), serial.fun(x), rtol=1e-14)
        np.testing.assert_allclose(par.jac(x), serial.jac(x), rtol=1e-13)


def test_values_alone_come_from_a_plain_solve():
    """With many unknowns, fun() and residuals() solve without derivatives."""
    n = 64
    x = (np.arange(n) + 0.5) / n
    u0 = np.sin(np.pi * x)
    ts = 0.005 * np.arange(1, 11)
    prob = sn.ODEProblem(diffusion, u0, (0.0, 0.05), 1.0 + 0.5 * x)
    data = sn.solve(prob, method="BDF", t_eval=ts, rtol=1e-10, atol=1e-12).y[:, ::8]
    obj = sn.Objective(prob, sn.L2Misfit(ts, data * 1.01, observe=np.arange(0, n, 8)),
                       method="BDF", rtol=1e-8, atol=1e-10)  # fmt: skip
    theta = prob.p * 1.1

    def no_sensitivities(*args, **kwargs):
        raise AssertionError("a value-only call must not solve for sensitivities")

    obj._sens = _Only(obj._sens.base, no_sensitivities)
    value, r = obj.fun(theta), obj.residuals(theta)
    assert obj.nsolves == 1  # one plain solve served both (cache)
    assert value == pytest.approx(0.5 * float(r @ r), rel=1e-14)
    # the adjoint's value (its own recorded solve) agrees to the solve's accuracy
    fresh = sn.Objective(prob, obj.term, method="BDF", rtol=1e-8, atol=1e-10)
    v2, g2 = fresh.fun_and_jac(theta)
    assert v2 == pytest.approx(value, rel=1e-6)
    assert np.all(np.isfinite(g2))


class _Only:
    """A stand-in SensitivitySolver: its plain solver works, a sensitivity solve fails."""

    def __init__(self, base, call):
        self.base, self._call = base, call

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)


@pytest.mark.slow
@pytest.mark.ci
def test_process_pool_gives_the_serial_objective():
    """ODE experiments pickle to worker processes (their kernels reload from the disk cache)."""
    from concurrent.futures import ProcessPoolExecutor

    serial = sn.SumObjective([lv_objective(lv_data(s), name=f"run {s}") for s in range(3)])
    x = P0 * 1.05
    with ProcessPoolExecutor(2) as pool:
        par = sn.SumObjective(
            [lv_objective(lv_data(s), name=f"run {s}") for s in range(3)], executor=pool
        )
        np.testing.assert_allclose(par.fun(x), serial.fun(x), rtol=1e-14)
        np.testing.assert_allclose(par.jac(x), serial.jac(x), rtol=1e-13)
        np.testing.assert_allclose(par.residual_jac(x), serial.residual_jac(x), rtol=1e-13)


def test_a_failing_trial_point_makes_the_optimiser_step_back():
    obj = lv_objective(lv_data(1))
    ev = obj.evaluate(np.array([3.0, 2.1, 0.47, -0.11]), {"value", "residuals"})
    assert ev.value == np.inf and np.all(np.isnan(ev.residuals))
    assert obj.failures == 1 and "max_steps" in obj.last_failure
    r = sn.fit(obj, P0 * 0.9, progress=False)  # unbounded: trf meets failures and recovers
    assert r.success and np.all(np.abs(r.x - P0) < 0.1 * P0)


def test_bad_input():
    prob = sn.ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), P0)
    with pytest.raises(TypeError, match="term must be an objective term"):
        sn.Objective(prob, np.ones(3))
    with pytest.raises(ValueError, match="params must be indices into p"):
        sn.Objective(prob, sn.L2Misfit(TS, lv_data(0)), params=[0, 7])
    a = lv_objective(lv_data(0))
    b = sn.Objective(prob, sn.L2Misfit(TS, lv_data(0)), params=[0, 1])
    with pytest.raises(ValueError, match="mismatched experiment shapes"):
        a + b


def test_verify_gradient_of_an_experiment(capsys):
    obj = lv_objective(lv_data(5))
    x = P0 * 1.1
    report = sn.verify_gradient(obj, x, rtols=(1e-4, 1e-6, 1e-8))
    assert report.passed and "discrete adjoint" in report.errors
    assert report.errors["discrete adjoint"] < 1e-6
    errs = list(report.sweep.values())
    assert errs[0] > errs[1] > errs[2]  # the gradient error falls with rtol
    assert "PASSED" in capsys.readouterr().out

    class Broken(type(obj)):
        def _evaluate(self, theta, need):
            ev = super()._evaluate(theta, need)
            ev.grad = ev.grad * (1.0 + 1e-3)  # a 0.1 % gradient error
            return ev

    bad = Broken(obj.prob, obj.term, method="Tsit5", rtol=1e-8, atol=1e-10)
    report = sn.verify_gradient(bad, x, rtols=(), verbose=False)
    assert not report.passed
