"""Forward sensitivities to the ends of t_span, and the bad-input checks of forward_sensitivity."""

import numpy as np
import pytest

from sensitivity.ode.problem import ODEProblem
from sensitivity.ode.solve import solve
from sensitivity.sens.forward import SensitivitySolver, forward_sensitivity
from tests.forward_problems import LV_P
from tests.rhs_suite import lotka_volterra

TIGHT = dict(method="DP8", rtol=1e-12, atol=1e-14)


def lv_final(t0, tf, ts):
    """LV outputs at ``ts`` (the last one at tf) for the interval (t0, tf)."""
    prob = ODEProblem(lotka_volterra, [1.0, 1.0], (t0, tf), LV_P)
    return solve(prob, t_eval=ts, **TIGHT).y


@pytest.mark.parametrize("method", ["Tsit5", "BDF", "ESDIRK"])
def test_derivatives_to_t0_and_tf_against_finite_differences(method):
    t0, tf, h = 0.5, 7.0, 1e-6
    inner = np.array([1.0, 4.0])
    prob = ODEProblem(lotka_volterra, [1.0, 1.0], (t0, tf), LV_P)
    fs = forward_sensitivity(
        prob, t_eval=np.append(inner, tf), wrt=("p", "t_span"), method=method, rtol=1e-9,
        atol=1e-11,
    )  # fmt: skip
    assert fs.success and fs.dy_dt_span.shape == (3, 2, 2) and fs.dy_dy0 is None
    d_t0 = (
        lv_final(t0 + h, tf, np.append(inner, tf)) - lv_final(t0 - h, tf, np.append(inner, tf))
    ) / (2 * h)
    rtol = 1e-5 if method == "ESDIRK" else 1e-6  # TR-BDF2 is of order 2
    np.testing.assert_allclose(fs.dy_dt_span[:, :, 0], d_t0, rtol=rtol, atol=rtol)
    # tf moves the last output only; earlier outputs do not depend on it
    d_tf = (
        lv_final(t0, tf + h, np.append(inner, tf + h))[-1]
        - lv_final(t0, tf - h, np.append(inner, tf - h))[-1]
    ) / (2 * h)
    np.testing.assert_allclose(fs.dy_dt_span[-1, :, 1], d_tf, rtol=1e-6, atol=1e-6)
    assert np.all(fs.dy_dt_span[:-1, :, 1] == 0.0)


def lv_window(t, y, p, dydt):
    # p[4] and p[5] do not enter f: they are the ends of the interval
    dydt[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    dydt[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


def test_parameters_that_set_the_interval():
    q = np.append(LV_P, [0.5, 7.0])
    ts_inner = np.array([1.0, 4.0])

    def outputs(q):
        prob = ODEProblem(lv_window, [1.0, 1.0], (q[4], q[5]), q)
        return solve(prob, t_eval=np.append(ts_inner, q[5]), **TIGHT).y

    t_span_dp = np.zeros((2, 6))
    t_span_dp[0, 4] = t_span_dp[1, 5] = 1.0
    prob = ODEProblem(lv_window, [1.0, 1.0], (q[4], q[5]), q)
    kw = dict(method="Tsit5", rtol=1e-10, atol=1e-12)
    fs = forward_sensitivity(prob, t_eval=np.append(ts_inner, q[5]), t_span_dp=t_span_dp, **kw)
    cols = []
    for j in range(6):
        e = np.zeros(6)
        e[j] = 1e-6
        cols.append((outputs(q + e) - outputs(q - e)) / 2e-6)
    ref = np.stack(cols, -1)
    np.testing.assert_allclose(fs.dy_dp, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    # the same through wrt="t_span" by the chain rule (its error norm scales the t0 column
    # differently, so the steps, and the last digits, differ)
    ts = forward_sensitivity(prob, t_eval=np.append(ts_inner, q[5]), wrt=("p", "t_span"), **kw)
    np.testing.assert_allclose(fs.dy_dp[:, :, 4:], ts.dy_dt_span, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fs.dy_dp[:, :, :4], ts.dy_dp[:, :, :4], rtol=1e-8, atol=1e-10)


def test_reused_solver_follows_new_parameters_in_the_t0_column():
    prob = ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 5.0), LV_P)
    solver = SensitivitySolver(prob, [1.0, 5.0], ("y0", "t_span"), "Tsit5", 1e-9, 1e-11)
    q = LV_P * 1.2
    a = solver(p=q, y0=np.array([0.8, 1.1]))
    b = forward_sensitivity(
        ODEProblem(lotka_volterra, [0.8, 1.1], (0.0, 5.0), q),
        t_eval=[1.0, 5.0],
        wrt=("y0", "t_span"),
        method="Tsit5",
        rtol=1e-9,
        atol=1e-11,
    )
    np.testing.assert_allclose(a.dy_dt_span, b.dy_dt_span, rtol=1e-13, atol=1e-13)
    # dy/dt0 = -dy/dy0 f(t0, y0)
    f0 = np.empty(2)
    lotka_volterra(0.0, np.array([0.8, 1.1]), q, f0)
    np.testing.assert_allclose(a.dy_dt_span[:, :, 0], -a.dy_dy0 @ f0, rtol=1e-7, atol=1e-9)


@pytest.fixture(scope="module")
def lv():
    return ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), LV_P)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(wrt="q"), "wrt must be one of"),
        (dict(wrt=("p", "tf")), "wrt must be one of"),
        (dict(wrt=()), "wrt must name at least one"),
        (dict(wrt=3), "wrt must be one of"),
        (dict(chunk=0), "chunk must be a positive integer"),
        (dict(chunk=-2), "chunk must be a positive integer"),
        (dict(chunk=2.5), "chunk must be a positive integer"),
        (dict(chunk=True), "chunk must be a positive integer"),
        (dict(error_control="some"), "error_control must be one of"),
        (dict(y0_dp=np.zeros((3, 3))), r"y0_dp must have shape \(2, 4\)"),
        (dict(y0_dp=np.full((2, 4), np.nan)), "y0_dp must be finite"),
        (dict(t_span_dp=np.zeros((2, 3))), r"t_span_dp must have shape \(2, 4\)"),
        (dict(t_span_dp=np.full((2, 4), np.inf)), "t_span_dp must be finite"),
        (dict(method="RK99"), "method must be 'auto' or one of"),
        (dict(rtol=0.0), "rtol must be a positive"),
    ],
)
def test_bad_arguments(lv, kwargs, match):
    with pytest.raises(ValueError, match=match):
        forward_sensitivity(lv, **kwargs)


def free_decay(t, y, p, dydt):  # no parameters at all
    dydt[0] = -y[0]
    dydt[1] = -2.0 * y[1]


def test_bad_parameters(lv):
    solver = SensitivitySolver(lv, [1.0, 2.0])
    with pytest.raises(ValueError, match="p must be finite"):
        solver(p=np.array([1.0, np.inf, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"p must have shape \(4,\)"):
        solver(p=np.ones(3))
    with pytest.raises(ValueError, match="y0 must be finite"):
        solver(y0=np.array([np.nan, 1.0]))
    prob = ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), LV_P)
    prob.p[1] = np.nan  # changed after validation by ODEProblem
    with pytest.raises(ValueError, match="prob.p must be a finite"):
        forward_sensitivity(prob)
    empty = ODEProblem(free_decay, [1.0, 1.0], (0.0, 1.0), np.zeros(0))
    with pytest.raises(ValueError, match="nothing to differentiate"):
        forward_sensitivity(empty, wrt="p")
