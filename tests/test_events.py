"""Events: terminal with restart (bouncing ball), counting crossings, direction, BDF."""

import numba
import numpy as np
import pytest

from sensitivity.ode.solve import Events, solve
from tests.problems import make_problem

G = 9.81


@numba.njit(cache=True)
def ball(t, y, p, dydt):
    dydt[0] = y[1]
    dydt[1] = -p[0]


@numba.njit(cache=True)
def ball_jac(t, y, p, J):
    J[0, 0], J[0, 1], J[1, 0], J[1, 1] = 0.0, 1.0, 0.0, 0.0


@numba.njit(cache=True)
def ground(t, y, p, g):
    g[0] = y[0]


@numba.njit(cache=True)
def oscillator(t, y, p, dydt):
    dydt[0] = y[1]
    dydt[1] = -y[0]


@numba.njit(cache=True)
def oscillator_jac(t, y, p, J):
    J[0, 0], J[0, 1], J[1, 0], J[1, 1] = 0.0, 1.0, -1.0, 0.0


@numba.njit(cache=True)
def two_events(t, y, p, g):
    g[0] = y[0]  # sin t: zero at k pi
    g[1] = y[0] - 0.5  # sin t = 1/2


@pytest.mark.parametrize("method", ["Tsit5", "DP5", "DP8", "BDF", "ESDIRK", "Rodas4"])
def test_bouncing_ball_restarts(method):
    """Drop from 10 m; each bounce keeps a fraction e of the speed (analytic bounce times)."""
    e, h0, t_end = 0.8, 10.0, 8.0
    hit = Events(ground, 1, direction=-1, terminal=True)
    t0, y0, bounces = 0.0, np.array([h0, 0.0]), []
    while t0 < t_end and len(bounces) < 4:
        prob = make_problem(ball, y0, (t0, t_end), [G], ball_jac)
        sol = solve(prob, method, events=hit, rtol=1e-10, atol=1e-12)
        assert sol.success
        if sol.status == 0:
            break
        assert sol.status == 1 and "terminal event" in sol.message
        t0 = sol.t_events[0][-1]
        assert sol.t[-1] == t0 and abs(sol.y[-1, 0]) < 1e-9
        bounces.append(t0)
        y0 = np.array([0.0, -e * sol.y_events[0][-1, 1]])  # state reset
    v0 = np.sqrt(2 * G * h0)
    exact = np.sqrt(2 * h0 / G) + np.cumsum([0.0] + [2 * v0 * e**k / G for k in (1, 2, 3)])
    np.testing.assert_allclose(bounces, exact[: len(bounces)], rtol=1e-8)
    assert len(bounces) == 4


@pytest.mark.parametrize("method", ["Tsit5", "DP8", "BDF", "ESDIRK", "Rodas4"])
def test_non_terminal_crossings_counted_with_directions(method):
    prob = make_problem(oscillator, [0.0, 1.0], (0.0, 10.0), [0.0], oscillator_jac)  # sin t
    rtol = {"Tsit5": 1e-10, "DP8": 1e-10, "BDF": 1e-8, "ESDIRK": 1e-9, "Rodas4": 1e-9}[method]
    both = solve(prob, method, events=Events(two_events, 2), rtol=rtol, atol=rtol)
    assert both.success and both.status == 0 and both.t[-1] == 10.0
    # zeros of sin at pi, 2pi, 3pi (the start at t = 0, exactly on zero, does not fire)
    np.testing.assert_allclose(both.t_events[0], np.pi * np.arange(1, 4), rtol=1e3 * rtol)
    half = np.array([np.pi / 6, 5 * np.pi / 6, 13 * np.pi / 6, 17 * np.pi / 6])
    np.testing.assert_allclose(both.t_events[1], half, rtol=1e3 * rtol)
    np.testing.assert_allclose(both.y_events[1][:, 0], 0.5, atol=1e3 * rtol)
    up = solve(prob, method, events=Events(two_events, 2, direction=[1, -1]), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(up.t_events[0], [2 * np.pi], rtol=1e3 * rtol)
    np.testing.assert_allclose(up.t_events[1], half[[1, 3]], rtol=1e3 * rtol)


def test_events_backward_in_time():
    prob = make_problem(oscillator, [0.0, 1.0], (0.0, -7.0), [0.0], oscillator_jac)
    sol = solve(
        prob, "Tsit5", events=Events(two_events, 2, terminal=[True, False]), rtol=1e-10, atol=1e-10
    )
    assert sol.status == 1
    np.testing.assert_allclose(sol.t_events[0], [-np.pi], rtol=1e-8)
    assert sol.t_events[1].size == 0  # sin t = 1/2 first at -7 pi / 6, after the stop
    assert sol.t[-1] == sol.t_events[0][-1]
