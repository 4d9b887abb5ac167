"""Adjoint gradients: dot-product and Taylor tests, against forward sensitivities."""

import numba
import numpy as np
import pytest

import sensitivity as sn
from sensitivity.testing import dot_product_test, taylor_test
from tests.rhs_suite import g_int, lotka_volterra

P0 = np.array([1.5, 1.0, 3.0, 1.0])
Y0 = np.array([1.0, 1.0])
TS = np.linspace(0.0, 10.0, 21)
# fixed steps: loose tolerances accept every step and max_step sets them, so the
# computed solution is a smooth function of p and y0 (the Taylor test needs that)
FIXED = dict(rtol=1e-1, atol=1e3)


def problem(p=P0, y0=Y0, max_step=None):
    return sn.ODEProblem(lotka_volterra, y0, (0.0, 10.0), p)


def solve_obs(p, y0, ts, **kw):
    return sn.solve(problem(p, y0), method="Tsit5", t_eval=ts, **kw).y


@numba.njit(cache=True)
def g_point(t, y, p):
    return y[0] * y[0] * p[1] + np.sin(y[1]) * t


@pytest.fixture(scope="module")
def data():
    return solve_obs(P0, Y0, TS, rtol=1e-10, atol=1e-12) * 1.05 + 0.01


def fixed_gradient(obj, p=P0, y0=Y0):
    return sn.adjoint_gradient(problem(p, y0), obj, method="Tsit5", **FIXED)


def test_taylor_rate_two_for_parameters_and_initial_values(data, monkeypatch):
    # cap the steps at 0.02 through the solver's max_step
    import sensitivity.ode.solve as ode_solve

    orig = ode_solve.Solver.__init__

    def capped(self, *a, **k):
        k.setdefault("max_step", 0.02)
        k["first_step"] = 0.02
        orig(self, *a, **k)

    monkeypatch.setattr(ode_solve.Solver, "__init__", capped)
    obj = sn.L2Misfit(TS, data)
    r = fixed_gradient(obj)
    assert r.stats["nreject"] == 0
    res = taylor_test(lambda p: fixed_gradient(obj, p=p).value, P0, r.grad_p, eps0=1e-3)
    assert res.passed and res.min_rate > 1.95
    res = taylor_test(lambda y0: fixed_gradient(obj, y0=y0).value, Y0, r.grad_y0, eps0=1e-3)
    assert res.passed


def test_taylor_rate_two_with_an_integral_term(data, monkeypatch):
    # the integral is a Gauss quadrature of the dense output on every step: its transpose
    # is exact, so the Taylor test holds at fixed steps as for observations
    import sensitivity.ode.solve as ode_solve

    orig = ode_solve.Solver.__init__

    def capped(self, *a, **k):
        k["max_step"] = k["first_step"] = 0.02
        orig(self, *a, **k)

    monkeypatch.setattr(ode_solve.Solver, "__init__", capped)
    obj = sn.L2Misfit(TS, data) + sn.IntegralObjective(g_int, t_span=(1.0, 7.3))
    r = fixed_gradient(obj)
    for x0, g, key in ((P0, r.grad_p, "p"), (Y0, r.grad_y0, "y0")):
        res = taylor_test(lambda x: fixed_gradient(obj, **{key: x}).value, x0, g, eps0=1e-3)
        assert res.passed and res.min_rate > 1.95, (key, res)


def test_dot_product_of_the_linearised_observation_map(data):
    # J = d y(t_obs) / dp by forward sensitivities on the same steps (partial control),
    # J^T w by the adjoint of 0.5 |y - (y_obs - w)|^2, whose gradient is J^T w
    prob = problem()
    fs = sn.forward_sensitivity(prob, t_eval=TS, method="Tsit5", error_control="partial")

    def forward(v):
        return fs.dy_dp @ v

    def adjoint(w):
        obj = sn.L2Misfit(TS, fs.y - w)
        return sn.adjoint_gradient(prob, obj, method="Tsit5").grad_p

    res = dot_product_test(forward, adjoint, shape_in=4, seed=1)
    assert res.passed, res


@pytest.mark.parametrize("method", ["Tsit5", "DP5"])
def test_adjoint_equals_forward_sensitivity_gradient(data, method):
    obj = sn.L2Misfit(TS, data, weights=np.array([1.0, 2.0]))
    a = sn.adjoint_gradient(problem(), obj, method=method, rtol=1e-8, atol=1e-10)
    f = sn.gradient(problem(), obj, method="forward", ode_method=method, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.value, f.value, rtol=1e-12)
    np.testing.assert_allclose(a.grad_p, f.grad_p, rtol=1e-9)
    np.testing.assert_allclose(a.grad_y0, f.grad_y0, rtol=1e-9)


def test_gradient_converges_to_the_true_gradient(data):
    obj = sn.L2Misfit(TS, data)
    exact = sn.adjoint_gradient(problem(), obj, rtol=1e-12, atol=1e-14).grad_p
    errs = [
        np.abs(sn.adjoint_gradient(problem(), obj, rtol=r, atol=r * 1e-2).grad_p - exact).max()
        for r in (1e-4, 1e-7)
    ]
    assert errs[1] < errs[0] / 50


def test_point_objective_with_compiled_g_and_sum_of_terms(data):
    ts = np.array([0.0, 3.3, 10.0])  # at t0, between steps, at the final time
    obj = sn.PointObjective(ts, g_point) + sn.L2Misfit(TS[::4], data[::4, 1:], observe=[1])
    a = sn.adjoint_gradient(problem(), obj, rtol=1e-9, atol=1e-11)
    f = sn.gradient(problem(), obj, method="forward", ode_method="Tsit5", rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(a.grad_p, f.grad_p, rtol=1e-8)
    np.testing.assert_allclose(a.grad_y0, f.grad_y0, rtol=1e-8)
    y = solve_obs(P0, Y0, ts, rtol=1e-9, atol=1e-11)
    direct = sum(y[k, 0] ** 2 * P0[1] + np.sin(y[k, 1]) * ts[k] for k in range(3))
    assert a.value == pytest.approx(
        direct
        + 0.5
        * np.sum((solve_obs(P0, Y0, TS[::4], rtol=1e-9, atol=1e-11)[:, 1] - data[::4, 1]) ** 2),
        rel=1e-9,
    )


def test_bad_input(data):
    prob = problem()
    with pytest.raises(ValueError, match="t_obs must lie in t_span"):
        sn.adjoint_gradient(prob, sn.L2Misfit([1.0, 11.0], np.ones((2, 2))))
    with pytest.raises(ValueError, match="t_obs must be sorted"):
        sn.L2Misfit([2.0, 1.0, 3.0], np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"data must have shape \(len\(t_obs\), n_observed\)"):
        sn.adjoint_gradient(prob, sn.L2Misfit(TS, np.ones((21, 3))))
    with pytest.raises(ValueError, match=r"data contains NaN or inf at data\[2, 1\]"):
        bad = np.ones((21, 2))
        bad[2, 1] = np.nan
        sn.L2Misfit(TS, bad)
    with pytest.raises(ValueError, match="weights must be finite and non-negative"):
        sn.L2Misfit(TS, data, weights=-1.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        sn.adjoint_gradient(prob, sn.L2Misfit(TS, data), kind="magic")
    two = sn.IntegralObjective(g_point) + sn.IntegralObjective(g_point)
    with pytest.raises(ValueError, match="at most one IntegralObjective"):
        sn.adjoint_gradient(prob, two, kind="discrete")
    with pytest.raises(ValueError, match="interpolant uses only its own stages"):
        sn.adjoint_gradient(prob, sn.L2Misfit(TS, data), method="DP8")
    with pytest.raises(TypeError, match="obj must be an objective term"):
        sn.adjoint_gradient(prob, 3.0)
