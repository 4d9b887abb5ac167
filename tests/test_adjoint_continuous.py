"""Continuous adjoint: against the discrete adjoint, forward sensitivities and differences."""

import numpy as np
import pytest
import scipy.sparse as sp

import sensitivity as sn
from tests.rhs_suite import g_int, g_point, g_rober, heat, lotka_volterra, robertson

P0 = np.array([1.5, 1.0, 3.0, 1.0])
Y0 = np.array([1.0, 1.0])
TS = np.linspace(0.0, 10.0, 21)


def lv(p=P0, y0=Y0):
    return sn.ODEProblem(lotka_volterra, y0, (0.0, 10.0), p)


@pytest.fixture(scope="module")
def lv_obj():
    data = sn.solve(lv(), "Tsit5", TS, 1e-10, 1e-12).y * 1.05 + 0.01
    return sn.L2Misfit(TS, data)


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_lotka_volterra_error_shrinks_with_rtol(lv_obj):
    ref = sn.adjoint_gradient(lv(), lv_obj, kind="discrete", rtol=1e-12, atol=1e-14)
    errs = []
    for rtol in (1e-4, 1e-6, 1e-8):
        r = sn.adjoint_gradient(lv(), lv_obj, kind="continuous", rtol=rtol, atol=rtol * 1e-2)
        assert r.success and r.stats["schedule"] == "store_all"
        errs.append(max(rel(r.grad_p, ref.grad_p), rel(r.grad_y0, ref.grad_y0)))
    assert errs[0] > 10 * errs[1] > 100 * errs[2]
    assert errs[2] < 1e-5


def test_observations_at_t0_final_time_and_between_steps():
    ts = np.array([0.0, 0.37, 5.123, 10.0])
    obj = sn.PointObjective(ts, g_point)
    r = sn.adjoint_gradient(lv(), obj, kind="continuous", rtol=1e-10, atol=1e-12)
    assert r.stats["forward_steps"] > 4  # observations fall between steps

    def value(p, y0):
        return sn.adjoint_gradient(lv(p, y0), obj, kind="discrete", rtol=1e-12, atol=1e-14).value

    h = 1e-6
    fd_p = [(value(P0 + h * e, Y0) - value(P0 - h * e, Y0)) / (2 * h) for e in np.eye(4)]
    fd_y = [(value(P0, Y0 + h * e) - value(P0, Y0 - h * e)) / (2 * h) for e in np.eye(2)]
    assert rel(r.grad_p, np.array(fd_p)) < 1e-6
    assert rel(r.grad_y0, np.array(fd_y)) < 1e-6
    # the observation at t0 alone: dG/dy0 is g_y(t0, y0) exactly, dG/dp = g_p
    r0 = sn.adjoint_gradient(lv(), sn.PointObjective([0.0], g_point), kind="continuous")
    assert np.allclose(r0.grad_y0, [2 * Y0[0] * P0[1], 0.0], rtol=0, atol=1e-14)
    assert np.allclose(r0.grad_p, [0, Y0[0] ** 2, 0, 0], rtol=0, atol=1e-14)


def test_robertson_against_forward_sensitivities():
    p, ts = np.array([0.04, 1e4, 3e7]), np.array([0.0, 0.4, 1.0, 4.0, 10.0, 40.0])
    prob = sn.ODEProblem(robertson, [1.0, 0.0, 0.0], (0.0, 40.0), p)
    obj = sn.PointObjective(ts, g_rober)
    fw = sn.gradient(prob, obj, method="forward", ode_method="BDF", rtol=1e-10, atol=1e-14)
    errs = []
    for rtol in (1e-5, 1e-8):
        r = sn.adjoint_gradient(
            prob, obj, kind="continuous", method="BDF", rtol=rtol, atol=rtol * 1e-4
        )
        assert r.success and r.stats["backward_steps"] > 0
        errs.append(
            max(np.abs((r.grad_p - fw.grad_p) / fw.grad_p).max(), rel(r.grad_y0, fw.grad_y0))
        )
    assert errs[1] < 1e-6 and errs[0] > 10 * errs[1]


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.usefixtures("patterned_lu")
def test_diffusion_field_against_forward_sensitivities(sparse):
    n = 24
    x = (np.arange(n) + 0.5) / n
    u0 = np.sin(np.pi * x) + 0.5 * np.sin(3 * np.pi * x)
    k = 1 + 0.5 * np.sin(2 * np.pi * x)
    pattern = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(n, n)) if sparse else None
    prob = sn.ODEProblem(heat, u0, (0.0, 0.05), k, jac_sparsity=pattern, param_sparsity=pattern)
    ts = np.array([0.01, 0.02, 0.05])
    data = 0.9 * sn.solve(prob, "BDF", ts, 1e-10, 1e-12).y[:, [3, 12, 20]]
    obj = sn.L2Misfit(ts, data, observe=[3, 12, 20])
    fw = sn.gradient(prob, obj, method="forward", ode_method="BDF", rtol=1e-10, atol=1e-12)
    r = sn.adjoint_gradient(prob, obj, kind="continuous", method="BDF", rtol=1e-8, atol=1e-10)
    assert r.success
    assert rel(r.grad_p, fw.grad_p) < 1e-5
    assert rel(r.grad_y0, fw.grad_y0) < 1e-5


@pytest.mark.parametrize("span", [None, (2.0, 7.5)])
def test_integral_objective_against_differences(span, lv_obj):
    obj = sn.IntegralObjective(g_int, t_span=span) + lv_obj
    r = sn.adjoint_gradient(lv(), obj, kind="continuous", rtol=1e-10, atol=1e-12)

    def value(p, y0):
        return sn.adjoint_gradient(lv(p, y0), obj, kind="continuous", rtol=1e-11, atol=1e-13).value

    h = 1e-5
    fd_p = [(value(P0 + h * e, Y0) - value(P0 - h * e, Y0)) / (2 * h) for e in np.eye(4)]
    fd_y = [(value(P0, Y0 + h * e) - value(P0, Y0 - h * e)) / (2 * h) for e in np.eye(2)]
    assert rel(r.grad_p, np.array(fd_p)) < 1e-6
    assert rel(r.grad_y0, np.array(fd_y)) < 1e-6
    # the value: the integral of the dense solution by scipy's adaptive quadrature
    from scipy.integrate import quad

    sol = sn.solve(lv(), "Tsit5", rtol=1e-12, atol=1e-14, dense=True)
    a, b = span or (0.0, 10.0)
    ref = quad(lambda t: g_int(t, sol(t), P0), a, b, limit=200, epsabs=1e-12)[0]
    assert abs((r.value - lv_obj_value(lv_obj)) - ref) < 1e-7 * abs(ref)


def lv_obj_value(obj):
    return sn.adjoint_gradient(lv(), obj, kind="discrete", rtol=1e-12, atol=1e-14).value


def test_integral_objective_in_an_experiment():
    obj = sn.Objective(lv(), sn.IntegralObjective(g_int), rtol=1e-10, atol=1e-12)
    x = P0 * 1.1
    g = obj.jac(x)
    h = 1e-5
    fd = [(obj.fun(x + h * e) - obj.fun(x - h * e)) / (2 * h) for e in np.eye(4)]
    assert rel(g, np.array(fd)) < 1e-6
    with pytest.raises(ValueError, match="no forward-sensitivity gradient"):
        obj.gradient_by("forward", x)


def test_memory_budget_keeps_the_peak_under_it_and_the_gradient(lv_obj):
    kw = dict(kind="continuous", rtol=1e-9, atol=1e-11)
    full = sn.adjoint_gradient(lv(), lv_obj, **kw)
    budget = full.stats["peak_stored_bytes"] // 3
    r = sn.adjoint_gradient(lv(), lv_obj, memory_budget=budget, **kw)
    assert r.success and r.stats["segments"] > 1
    assert r.stats["peak_stored_bytes"] <= budget
    assert r.stats["recomputations"] >= 1.0
    assert rel(r.grad_p, full.grad_p) < 1e-6 and rel(r.grad_y0, full.grad_y0) < 1e-6
    # 64 segments but room for fewer states: a binomial schedule that recomputes
    tight = sn.adjoint_gradient(lv(), lv_obj, checkpoints=64, memory_budget="10.5kB", **kw)
    assert tight.stats["schedule"].startswith("binomial"), tight.stats
    assert tight.stats["peak_stored_bytes"] <= 10500
    assert tight.stats["recomputations"] > 2.0
    assert rel(tight.grad_p, full.grad_p) < 1e-6
    four = sn.adjoint_gradient(lv(), lv_obj, checkpoints=4, **kw)
    assert four.stats["segments"] == 4 and rel(four.grad_p, full.grad_p) < 1e-6


@pytest.mark.parametrize(
    "kind, method", [("discrete", "Tsit5"), ("discrete", "BDF"), ("continuous", "BDF")]
)
def test_backward_time_span(kind, method):
    prob = sn.ODEProblem(lotka_volterra, Y0, (5.0, 0.0), P0)
    ts = np.array([5.0, 3.3, 1.0, 0.0])
    obj = sn.L2Misfit(ts, np.ones((4, 2))) + sn.IntegralObjective(g_int)
    r = sn.adjoint_gradient(prob, obj, kind=kind, method=method, rtol=1e-9, atol=1e-11)
    ref = sn.adjoint_gradient(prob, obj, kind="continuous", rtol=1e-11, atol=1e-13)
    integral = r.value - sn.adjoint_gradient(prob, obj.terms[0]).value
    assert r.success and integral < 0.0  # oriented from t_span[0] = 5 to t_span[1] = 0
    assert rel(r.grad_p, ref.grad_p) < 1e-6 and rel(r.grad_y0, ref.grad_y0) < 1e-6


def test_bad_input(lv_obj):
    with pytest.raises(ValueError, match="kind must be one of"):
        sn.adjoint_gradient(lv(), lv_obj, kind="backsolve")
    two = sn.IntegralObjective(g_int) + sn.IntegralObjective(g_int)
    with pytest.raises(ValueError, match="at most one IntegralObjective"):
        sn.adjoint_gradient(lv(), two, kind="continuous")
    with pytest.raises(ValueError, match="checkpoints must be a positive integer"):
        sn.adjoint_gradient(lv(), lv_obj, kind="continuous", checkpoints=0)
    with pytest.raises(ValueError, match="memory_budget must be"):
        sn.adjoint_gradient(lv(), lv_obj, kind="continuous", memory_budget="lots")
    with pytest.raises(ValueError, match="p must have shape"):
        sn.adjoint_gradient(lv(), lv_obj, kind="continuous", p=np.ones(3))
    with pytest.raises(ValueError, match="t_obs must lie in t_span"):
        sn.adjoint_gradient(lv(), sn.L2Misfit([11.0], [[1.0, 1.0]]), kind="continuous")
