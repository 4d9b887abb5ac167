"""Compiled explicit Runge-Kutta kernels: order, agreement with scipy, dense output."""

import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import scipy.linalg
from scipy.integrate import solve_ivp

from sensitivity.ode.solve import solve
from tests.problems import linear, lotka_volterra, lotka_volterra_jac, make_problem

A = np.array([[-0.5, 2.0, 0.0], [-2.0, -0.5, 0.3], [0.1, 0.0, -1.0]])
Y0 = np.array([1.0, 0.5, -0.2])


def linear_problem(t_end=2.0, compile=True):
    return make_problem(linear, Y0, (0.0, t_end), A.ravel(), compile=compile)


def fixed_step(prob, method, h, **kw):
    """Take steps of exactly h: huge tolerances accept every step, max_step caps them."""
    return solve(prob, method, rtol=1e10, atol=1e10, first_step=h, max_step=h, **kw)


@pytest.mark.parametrize("method, order", [("DP5", 5), ("Tsit5", 5), ("DP8", 8)])
def test_convergence_order_against_expm(method, order):
    prob = linear_problem()
    exact = scipy.linalg.expm(2.0 * A) @ Y0
    hs = np.array([0.1, 0.05, 0.025, 0.0125]) if order == 5 else np.array([0.4, 0.2, 0.1])
    errs = [np.abs(fixed_step(prob, method, h).y[-1] - exact).max() for h in hs]
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.3


@pytest.mark.parametrize("method, order", [("DP5", 4), ("Tsit5", 4), ("DP8", 7)])
def test_dense_output_order(method, order):
    # interpolated values between the steps converge with the interpolant's order (4),
    # plus one for the local nature of the interpolation error: global error is O(h^5) at
    # the nodes and O(h^5) inside for these free interpolants of order 4 (local h^5)
    prob = linear_problem()
    t_eval = np.array([0.37, 1.13, 1.71])
    exact = np.array([scipy.linalg.expm(t * A) @ Y0 for t in t_eval])
    hs = np.array([0.2, 0.1, 0.05, 0.025]) if order == 4 else np.array([0.4, 0.2, 0.1])
    errs = [np.abs(fixed_step(prob, method, h, t_eval=t_eval).y - exact).max() for h in hs]
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    if method == "DP8":  # pre-asymptotic above 8 before rounding sets in
        assert slope > order + 1 - 0.3
    else:
        assert abs(slope - (order + 1)) < 0.3


@pytest.mark.parametrize("method, theirs", [("DP5", "RK45"), ("DP8", "DOP853")])
def test_step_by_step_agreement_with_scipy(method, theirs):
    """DP5 is scipy's RK45 and DP8 its DOP853: with the same steps the states agree."""
    prob = make_problem(lotka_volterra, [1.0, 1.0], (0.0, 2.0), [1.5, 1.0, 3.0, 1.0])
    h = 0.05
    ours = fixed_step(prob, method, h)

    def fun(t, y):
        return [1.5 * y[0] - y[0] * y[1], -3.0 * y[1] + y[0] * y[1]]

    ref = solve_ivp(
        fun, (0.0, 2.0), [1.0, 1.0], method=theirs, first_step=h, max_step=h, rtol=1e10, atol=1e10
    )
    assert ours.t.shape == ref.t.shape
    np.testing.assert_allclose(ours.t, ref.t, rtol=0, atol=1e-14)
    np.testing.assert_allclose(ours.y, ref.y.T, rtol=1e-13, atol=1e-13)


def test_adaptive_close_to_scipy_rk45():
    """With adaptive steps (PI vs scipy's I controller) both meet the tolerance."""
    prob = make_problem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), [1.5, 1.0, 3.0, 1.0])
    t_eval = np.linspace(0, 10, 101)

    def fun(t, y):
        return [1.5 * y[0] - y[0] * y[1], -3.0 * y[1] + y[0] * y[1]]

    tight = solve_ivp(
        fun, (0, 10), [1.0, 1.0], method="DOP853", t_eval=t_eval, rtol=1e-13, atol=1e-13
    ).y.T
    # work budgets: measured (nsteps, nfev) at these tolerances, +30%
    budgets = {"DP5": (150, 950), "Tsit5": (150, 950), "DP8": (60, 1000)}
    for method, (max_steps, max_nfev) in budgets.items():
        sol = solve(prob, method, t_eval=t_eval, rtol=1e-6, atol=1e-8)
        assert sol.success
        assert np.abs(sol.y - tight).max() < 1e-4
        assert sol.stats["nsteps"] < max_steps and sol.stats["nfev"] < max_nfev


def test_compile_false_runs_the_same_kernel_in_python():
    compiled = solve(linear_problem(), "Tsit5", rtol=1e-8, atol=1e-10)
    plain = solve(linear_problem(compile=False), "Tsit5", rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(plain.t, compiled.t, rtol=1e-15)
    np.testing.assert_allclose(plain.y, compiled.y, rtol=1e-12, atol=1e-15)
    assert plain.stats == compiled.stats


def test_backward_integration():
    exact = scipy.linalg.expm(-2.0 * A) @ Y0
    prob = make_problem(linear, Y0, (0.0, -2.0), A.ravel())
    sol = solve(prob, "DP5", t_eval=[0.0, -1.0, -2.0], rtol=1e-10, atol=1e-12)
    assert sol.success
    np.testing.assert_allclose(sol.t, [0.0, -1.0, -2.0])
    np.testing.assert_allclose(sol.y[-1], exact, rtol=1e-8)


@pytest.mark.parametrize("switch", ["NUMBA_DISABLE_JIT", "SENSITIVITY_NO_NUMBA"])
def test_runs_with_numba_disabled(switch):
    code = (
        "import numpy as np\n"
        "from sensitivity.ode.solve import solve\n"
        "from tests.problems import lotka_volterra, lotka_volterra_jac, make_problem\n"
        "prob = make_problem(lotka_volterra, [1.0, 1.0], (0.0, 1.0), [1.5, 1.0, 3.0, 1.0],\n"
        "                    lotka_volterra_jac)\n"
        "for m in ('Tsit5', 'DP8', 'BDF', 'ESDIRK', 'Rodas4'):\n"
        "    s = solve(prob, m, t_eval=[0.5, 1.0], rtol=1e-6, atol=1e-8)\n"
        "    assert s.success, s.message\n"
        "    print(m, repr(s.y[-1].tolist()))\n"
    )
    env = dict(os.environ, **{switch: "1"})
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    compiled = make_problem(
        lotka_volterra, [1.0, 1.0], (0.0, 1.0), [1.5, 1.0, 3.0, 1.0], lotka_volterra_jac
    )
    for line in out.stdout.strip().splitlines():
        method, values = line.split(" ", 1)
        ref = solve(compiled, method, t_eval=[0.5, 1.0], rtol=1e-6, atol=1e-8).y[-1]
        np.testing.assert_allclose(eval(values), ref, rtol=1e-12)


def test_borrowed_views_alias_their_owner():
    # The step loop's work arrays are borrowed (not reference-counted) views: writes through
    # them and through their slices must land in the owner, and Python sees the owner itself.
    from sensitivity.ode.control import borrow, hold

    @numba.njit
    def write_through(a):
        v = borrow(a)
        v[1] = 7.0
        w = borrow(v[1:])
        w[0] += 1.0
        hold(a)
        return v[1]

    a = np.zeros(3)
    assert write_through(a) == 8.0 and a[1] == 8.0
    assert borrow(a) is a
