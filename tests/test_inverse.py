"""Inversion layer on closed-form models: derivatives, fits, uncertainty, executors."""

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
from scipy import optimize

import sensitivity as sn
from sensitivity.testing import check_derivative, dot_product_test, taylor_test

T = np.linspace(0.0, 5.0, 40)
TRUE = np.array([2.0, 0.7, 0.3])
SIGMA = 0.02


def decay(p):
    return p[0] * np.exp(-p[1] * T) + p[2]


def synthetic(seed, sigma=SIGMA):
    return decay(TRUE) + sigma * np.random.default_rng(seed).standard_normal(T.size)


def failing_model(p):
    raise FloatingPointError("the solver diverged")


@pytest.fixture
def obj():
    return sn.FunctionObjective(decay, 3, data=synthetic(0), name="decay")


# ---- derivatives of the scipy-facing methods ------------------------------------------


@pytest.mark.parametrize("transform", [None, [sn.Log(), sn.Log(), None], sn.Bounded(-5.0, 5.0)])
def test_gradient_and_jacobian_with_transforms(obj, transform):
    obj.with_transform(transform)
    x = obj.to_x(np.array([1.5, 0.9, 0.2]))
    assert taylor_test(obj.fun, x, obj.jac(x)).passed
    assert check_derivative(obj.residuals, x, obj.residual_jac(x)).passed
    assert check_derivative(
        obj.jac, x, np.stack([obj.hessp(x, e, kind="exact") for e in np.eye(3)], 1)
    ).passed
    J = obj.residual_jac(x)
    v = np.array([0.3, -1.0, 2.0])
    if transform is None:  # Gauss-Newton is J^T J v exactly (no transform curvature)
        np.testing.assert_allclose(obj.hessp(x, v), J.T @ (J @ v), rtol=1e-12)


def test_arrays_for_scipy_are_float64_c_contiguous(obj):
    x = np.array([1.5, 0.9, 0.2])
    for a in (obj.jac(x), obj.residuals(x), obj.residual_jac(x), obj.hessp(x, np.ones(3))):
        assert a.dtype == np.float64 and a.flags.c_contiguous


def test_value_gradient_and_jacobian_share_one_evaluation(obj):
    x = np.array([1.5, 0.9, 0.2])
    obj.fun_and_jac(x)
    n = obj.nevals
    obj.fun(x), obj.jac(x), obj.residuals(x), obj.residual_jac(x)
    assert obj.nevals == n == 1
    obj.fun(x + 1e-3)
    assert obj.nevals == 2


# ---- fits -------------------------------------------------------------------------------


def test_least_squares_and_minimize_reach_the_same_optimum(obj):
    a = sn.fit(obj, [1.0, 1.0, 0.0], progress=False)
    b = sn.fit(obj, [1.0, 1.0, 0.0], method="L-BFGS-B", progress=False, ftol=1e-15, gtol=1e-12)
    c = sn.fit(obj, [1.0, 1.0, 0.0], method="Newton-CG", progress=False)
    ref = optimize.least_squares(
        lambda p: decay(p) - obj.data, [1.0, 1.0, 0.0], xtol=1e-14, ftol=1e-14
    )
    for r in (a, b, c):
        assert r.success
        np.testing.assert_allclose(r.x, ref.x, rtol=1e-5)
    assert np.all(np.abs(a.x - TRUE) < 4 * a.stderr)


@pytest.fixture
def used(monkeypatch):
    """The ``method`` of every scipy ``least_squares`` call made during the test."""
    calls = []
    real = optimize.least_squares

    def spy(*args, **kwargs):
        calls.append(kwargs["method"])
        return real(*args, **kwargs)

    monkeypatch.setattr(optimize, "least_squares", spy)
    return calls


def test_least_squares_algorithms_agree(obj, used):
    x0 = [1.0, 1.0, 0.0]
    fits = {
        m: sn.fit(obj, x0, method=m, progress=False) for m in ("least_squares", "trf", "dogbox")
    }
    bounded = sn.fit(obj, x0, bounds=([0, 0, -1], [10, 10, 1]), progress=False)
    # unbounded, 40 residuals >= 3 unknowns: MINPACK's Levenberg-Marquardt; bounds: trf
    assert used == ["lm", "trf", "dogbox", "trf"]
    for r in list(fits.values()) + [bounded]:
        assert r.success
        np.testing.assert_allclose(r.x, fits["trf"].x, rtol=1e-6)
        np.testing.assert_allclose(r.stderr, fits["trf"].stderr, rtol=1e-5)
    assert len(fits["least_squares"].history) >= 2
    with pytest.raises(ValueError, match="does not take bounds"):
        sn.fit(obj, x0, method="lm", bounds=([0, 0, -1], [10, 10, 1]), progress=False)


def test_levenberg_marquardt_falls_back_to_trf_where_the_model_fails(used):
    # the model is undefined (NaN) for a negative rate p[1]: from this start a trial step of
    # LM lands there (checked: without the fallback MINPACK sees NaN residuals)
    def fragile(p):
        return np.where(p[1] < 0.0, np.nan, decay(p))

    data = synthetic(3)
    ref = sn.fit(sn.FunctionObjective(decay, 3, data=data), [2.0, 0.8, 0.3], method="trf",
                 progress=False)  # fmt: skip
    used.clear()
    r = sn.fit(sn.FunctionObjective(fragile, 3, data=data), [2.0, 3.0, 0.3], progress=False)
    assert used == ["lm", "trf"]
    assert r.success
    np.testing.assert_allclose(r.x, ref.x, rtol=1e-6)


def test_covariance_matches_monte_carlo_spread():
    fits = []
    for seed in range(200):
        o = sn.FunctionObjective(decay, 3, data=synthetic(seed))
        fits.append(sn.fit(o, TRUE, progress=False).x)
    spread = np.std(fits, axis=0, ddof=1)
    r = sn.fit(sn.FunctionObjective(decay, 3, data=synthetic(1000)), TRUE, progress=False)
    # 200 draws: the sample std has ~5% relative error; allow 20%
    np.testing.assert_allclose(r.stderr, spread, rtol=0.2)
    assert abs(r.rmse - SIGMA) < 0.3 * SIGMA
    lo, hi = r.conf_int.T
    assert np.all(lo < r.x) and np.all(r.x < hi)
    assert np.allclose(np.diag(r.correlation), 1.0)


def test_log_parameters_and_bounds(obj):
    o = obj.with_transform([sn.Log(), sn.Log(), None])
    r = sn.fit(o, [1.0, 1.0, 0.1], bounds=([0.1, 0.1, -1.0], [10.0, 10.0, 1.0]), progress=False)
    assert r.success and np.all(np.abs(r.x - TRUE) < 4 * r.stderr)
    assert r.x_opt[0] == pytest.approx(np.log(r.x[0]))


def test_history_callback_and_summary(obj, capsys):
    seen = []
    r = sn.fit(
        obj,
        [1.0, 1.0, 0.0],
        callback=lambda th, f: seen.append(f),
        progress=True,
        names=["a", "k", "c"],
    )
    assert len(r.history) == len(seen) >= 3
    assert r.history[-1]["fun"] <= r.history[0]["fun"]
    assert capsys.readouterr().err == ""  # not a terminal: no progress bar
    text = r.summary()
    assert "k" in text and "confidence interval" in text and "correlation" in text


# ---- sums, mapping and executors ------------------------------------------------------


def experiments(n=3):
    return [sn.FunctionObjective(decay, 3, data=synthetic(s), name=f"well {s}") for s in range(n)]


def test_sum_of_experiments_shares_parameters():
    parts = experiments()
    total = parts[0] + parts[1] + parts[2]
    x = np.array([1.5, 0.9, 0.2])
    assert total.fun(x) == pytest.approx(sum(p.fun(x) for p in parts), rel=1e-14)
    np.testing.assert_allclose(total.jac(x), sum(p.jac(x) for p in parts), rtol=1e-14)
    assert total.residual_jac(x).shape == (3 * T.size, 3)
    assert total.n_data == 3 * T.size
    r = sn.fit(total, [1.0, 1.0, 0.0], progress=False)
    assert np.all(np.abs(r.x - TRUE) < 4 * r.stderr)


def test_mapping_experiments_into_a_global_vector():
    # two experiments share the rate k (global 1) but have their own amplitude/offset
    a = sn.FunctionObjective(decay, 3, data=synthetic(1)).on([0, 1, 2], 5)
    b = sn.FunctionObjective(decay, 3, data=synthetic(2) * 1.0).on([3, 1, 4], 5)
    total = a + b
    x = np.array([1.5, 0.9, 0.2, 2.5, 0.1])
    assert taylor_test(total.fun, x, total.jac(x)).passed
    assert check_derivative(total.residuals, x, total.residual_jac(x)).passed
    H = np.stack([total.hessp(x, e, kind="exact") for e in np.eye(5)], 1)
    assert check_derivative(total.jac, x, H).passed


def test_mismatched_experiment_shapes_are_named():
    a = sn.FunctionObjective(decay, 3, data=synthetic(0), name="A")
    b = sn.FunctionObjective(lambda p: p[0] * T, 1, data=synthetic(0), name="B")
    with pytest.raises(ValueError, match="mismatched experiment shapes.*'A': 3.*'B': 1"):
        a + b


@pytest.mark.parametrize("make", ["thread", "process"])
def test_executors_give_identical_results(make):
    x = np.array([1.5, 0.9, 0.2])
    serial = sn.SumObjective(experiments())
    pool = ThreadPoolExecutor(2) if make == "thread" else ProcessPoolExecutor(2)
    with pool:
        par = sn.SumObjective(experiments(), executor=pool)
        assert par.fun(x) == serial.fun(x)
        np.testing.assert_array_equal(par.jac(x), serial.jac(x))
        np.testing.assert_array_equal(par.residual_jac(x), serial.residual_jac(x))


def test_dask_local_cluster_gives_identical_results():
    distributed = pytest.importorskip("distributed")
    x = np.array([1.5, 0.9, 0.2])
    serial = sn.SumObjective(experiments())
    # processes=False: scheduler and worker in this process on the inproc:// transport,
    # so nothing listens on a network interface
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        par = sn.SumObjective(experiments(), executor=client)
        assert par.fun(x) == serial.fun(x)
        np.testing.assert_array_equal(par.jac(x), serial.jac(x))
        bad = sn.SumObjective(
            experiments(2) + [sn.FunctionObjective(failing_model, 3, name="well 9")],
            executor=client,
        )
        with pytest.raises(sn.TermError, match="well 9 failed: FloatingPointError"):
            bad.fun(x)


def test_a_failing_experiment_is_named():
    bad = sn.SumObjective(experiments(2) + [sn.FunctionObjective(failing_model, 3, name="well 9")])
    with pytest.raises(sn.TermError, match="well 9 failed: FloatingPointError: the solver"):
        bad.fun(np.ones(3))


# ---- regularisation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "term",
    [
        sn.Tikhonov(12, order=0, weight=0.3, reference=np.linspace(0, 1, 12)),
        sn.Tikhonov(12, order=1, weight=2.0, spacing=0.5),
        sn.Tikhonov(12, order=2, weight=0.1),
        sn.Tikhonov((3, 4), order=1, weight=1.5),
        sn.Tikhonov((4, 3), order=2, weight=1.5, spacing=(1.0, 2.0)),
        sn.SmoothedTV(12, weight=0.7, eps=0.1),
        sn.SmoothedTV((3, 4), weight=0.7, eps=0.1),
    ],
)
def test_regularization_derivatives(term, rng):
    x = rng.standard_normal(12)
    assert term.fun(x) == pytest.approx(0.5 * np.sum(term.residuals(x) ** 2), rel=1e-13)
    assert taylor_test(term.fun, x, term.jac(x)).passed
    assert check_derivative(term.residuals, x, term.residual_jac(x)).passed
    J = term.residual_jac(x)
    res = dot_product_test(lambda v: J @ v, lambda w: J.T @ w, shape_in=12)
    assert res.passed
    if isinstance(term, sn.Tikhonov):
        H = np.stack([term.hessp(x, e, kind="exact") for e in np.eye(12)], 1)
        np.testing.assert_allclose(H, J.T @ J, atol=1e-12)


def test_tikhonov_values_on_known_fields():
    assert sn.Tikhonov(5, order=1, weight=2.0).fun(np.arange(5.0)) == pytest.approx(4.0)
    assert sn.Tikhonov(5, order=2).fun(np.arange(5.0) * 3 + 1) == pytest.approx(0.0)
    tv = sn.SmoothedTV(5, weight=1.0, eps=1e-8)
    assert tv.fun(np.array([0, 0, 1, 1, 1.0])) == pytest.approx(1.0, rel=1e-6)


def blur_problem(n=64, seed=0):
    x = np.linspace(0, 1, n)
    K = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * 0.03**2))
    K /= K.sum(1, keepdims=True)
    truth = np.where((x > 0.3) & (x < 0.6), 1.0, 0.0) + 0.5 * np.sin(2 * np.pi * x)
    data = K @ truth + 0.01 * np.random.default_rng(seed).standard_normal(n)
    return K, truth, data


def test_regularized_deconvolution_recovers_the_field():
    K, truth, data = blur_problem()
    data_term = sn.FunctionObjective(lambda m: K @ m, 64, data=data)
    plain = sn.fit(data_term, np.zeros(64), progress=False)
    reg = sn.fit(
        data_term + sn.Tikhonov(64, order=1, weight=1e-4, spacing=1 / 63),
        np.zeros(64),
        progress=False,
    )
    err_reg = np.linalg.norm(reg.x - truth) / np.linalg.norm(truth)
    err_plain = np.linalg.norm(plain.x - truth) / np.linalg.norm(truth)
    assert err_reg < 0.25 and err_reg < 0.5 * err_plain


def test_l_curve_finds_an_interior_corner():
    K, truth, data = blur_problem(n=32)
    data_term = sn.FunctionObjective(lambda m: K @ m, 32, data=data)
    lc = sn.l_curve(
        data_term, lambda w: sn.Tikhonov(32, order=1, weight=w), np.logspace(-7, 1, 9), np.zeros(32)
    )
    assert 0 < lc.corner < 8
    assert np.all(np.diff(lc.misfit) > -1e-12)  # misfit grows with the weight
    assert np.all(np.diff(lc.norm) < 1e-12)  # model roughness falls


# ---- bad input --------------------------------------------------------------------------


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="data contains NaN or inf at index \\(3,\\)"):
        sn.FunctionObjective(decay, 3, data=np.where(np.arange(40) == 3, np.nan, 1.0))
    with pytest.raises(ValueError, match="weights must be finite and non-negative"):
        sn.FunctionObjective(decay, 3, data=synthetic(0), weights=-1.0)
    obj = sn.FunctionObjective(decay, 3, data=synthetic(0))
    with pytest.raises(ValueError, match=r"x0\[1\] = 5.0 lies outside bounds \[0.0, 1.0\]"):
        sn.fit(obj, [1.0, 5.0, 0.0], bounds=([0, 0, 0], [3, 1, 1]))
    with pytest.raises(TypeError, match="derivative must be a callable"):
        sn.Transform(np.exp, np.log, None)
    with pytest.raises(ValueError, match="method must be one of"):
        sn.fit(obj, [1.0, 1.0, 0.0], method="simplex")
    with pytest.raises(ValueError, match="does not take bounds"):
        sn.fit(obj, [1.0, 1.0, 0.0], method="BFGS", bounds=(0, 1))
    with pytest.raises(ValueError, match="x0 must be 3 finite numbers"):
        sn.fit(obj, [1.0, np.nan, 0.0])
    with pytest.raises(ValueError, match="model returned shape"):
        sn.FunctionObjective(lambda p: p, 3, data=synthetic(0)).fun(np.ones(3))
    with pytest.raises(ValueError, match="Log transform: parameters must be positive"):
        sn.fit(obj.with_transform(sn.Log()), [1.0, 1.0, -0.5])
    with pytest.raises(TypeError, match="x must be real"):
        obj.fun(np.array([1.0, 1.0, 0.0]) + 1e-30j)
    with pytest.raises(TypeError, match="transforms act on real parameters"):
        obj.with_transform(sn.Log()).transform.forward(np.ones(3) + 1e-30j)


def test_uncertainty_option_and_large_fields():
    """Covariance for few parameters by default, skipped for fields unless asked for."""
    obj = sn.FunctionObjective(decay, 3, data=synthetic(1))
    r = sn.fit(obj, [1.5, 1.0, 0.0], progress=False)
    assert r.stderr is not None and r.rmse is not None
    r = sn.fit(obj, [1.5, 1.0, 0.0], progress=False, uncertainty=False)
    assert r.stderr is None and r.covariance is None
    assert r.rmse == pytest.approx(np.sqrt(2 * r.fun / T.size), rel=1e-12)
    # a 100-parameter linear field: no dense covariance by default, exact one on request
    rng = np.random.default_rng(3)
    A = rng.standard_normal((300, 100))
    truth = rng.standard_normal(100)
    data = A @ truth + 0.1 * rng.standard_normal(300)
    field = sn.FunctionObjective(lambda p: A @ p, 100, data=data)
    r = sn.fit(field, np.zeros(100), progress=False)
    assert r.stderr is None and r.dof == 200
    r = sn.fit(field, np.zeros(100), progress=False, uncertainty=True)
    s2 = np.sum((A @ r.x - data) ** 2) / 200
    np.testing.assert_allclose(r.covariance, s2 * np.linalg.inv(A.T @ A), rtol=1e-6)
    with pytest.raises(ValueError, match="uncertainty must be"):
        sn.fit(obj, [1.5, 1.0, 0.0], progress=False, uncertainty="yes")
