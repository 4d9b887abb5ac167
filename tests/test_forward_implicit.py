"""Forward sensitivities through ESDIRK (TR-BDF2) and the sensitivity right-hand side kernel."""

import numpy as np
import pytest

from sensitivity.ad import nb
from sensitivity.ode.problem import ODEProblem
from sensitivity.ode.solve import solve
from sensitivity.sens.forward import forward_sensitivity
from sensitivity.sens.forward_kernels import sens_rhs
from tests.forward_problems import LV_P, LV_T, fd_jacobian, linear, linear_exact, unused_parameter
from tests.rhs_suite import SUITE, evaluate, lotka_volterra, robertson


@pytest.fixture(scope="module")
def lv():
    return ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), LV_P)


@pytest.fixture(scope="module")
def lv_fd():
    return fd_jacobian(
        lambda q: ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), q), LV_P, LV_T, "DP8"
    )


@pytest.mark.parametrize("case", [c for c in SUITE if c.analytic], ids=lambda c: c.name)
@pytest.mark.parametrize("K", [1, 3])
def test_sens_rhs_kernel_against_complex_step(case, K, rng):
    # dY[n:] = J S + f_p E column by column; complex step of f along (S[:, k], E[:, k])
    t, y, p = case.point()
    n, m = case.n, case.m
    S, E = rng.standard_normal((n, K)), rng.standard_normal((m, K))
    Y, P, dY = np.concatenate([y, S.ravel()]), np.concatenate([p, E.ravel()]), np.empty(n * (K + 1))
    sens_rhs(nb.compile_rhs(case.f), K)(t, Y, P, dY)
    np.testing.assert_allclose(dY[:n], evaluate(case.f, t, y, p), rtol=1e-14, atol=1e-14)
    h = 1e-30
    for k in range(K):
        cs = evaluate(case.f, t, y + 1j * h * S[:, k], p + 1j * h * E[:, k]).imag / h
        np.testing.assert_allclose(dY[n:].reshape(n, K)[:, k], cs, rtol=1e-12, atol=1e-13)


def test_linear_ode_against_expm_and_convergence():
    p = np.array([0.3, 2.0, 0.5])
    y0 = np.array([1.0, 0.5])
    prob = ODEProblem(linear, y0, (0.0, 3.0), p)
    _, S = linear_exact(p, y0, 3.0)
    errors = []
    for rtol in (1e-5, 1e-8):
        fs = forward_sensitivity(
            prob, t_eval=[1.0, 3.0], method="ESDIRK", rtol=rtol, atol=rtol * 1e-2
        )
        assert fs.success
        errors.append(np.abs(fs.dy_dp[-1] - S).max())
    assert errors[1] < 2e-6 and errors[1] < errors[0] / 20


@pytest.mark.parametrize("error_control", ["full", "partial"])
def test_lotka_volterra_against_finite_differences(lv, lv_fd, error_control):
    fs = forward_sensitivity(
        lv, t_eval=LV_T, method="ESDIRK", rtol=1e-8, atol=1e-10, error_control=error_control
    )
    assert fs.success
    np.testing.assert_allclose(fs.dy_dp, lv_fd, atol=3e-5 * np.abs(lv_fd).max())


def test_partial_error_control_keeps_the_plain_steps(lv, lv_fd):
    plain = solve(lv, method="ESDIRK", t_eval=LV_T, rtol=1e-6, atol=1e-8)
    part = forward_sensitivity(
        lv, t_eval=LV_T, method="ESDIRK", rtol=1e-6, atol=1e-8, error_control="partial"
    )
    full = forward_sensitivity(lv, t_eval=LV_T, method="ESDIRK", rtol=1e-6, atol=1e-8)
    assert part.stats["nsteps"] == plain.stats["nsteps"]
    assert part.stats["nlu"] == plain.stats["nlu"]
    np.testing.assert_allclose(part.y, plain.y, rtol=1e-13, atol=1e-13)
    # the sensitivities in the error norm ask for more steps, and get closer to the truth
    assert full.stats["nsteps"] > plain.stats["nsteps"]
    err_full, err_part = (np.abs(fs.dy_dp - lv_fd).max() for fs in (full, part))
    assert err_full < 0.7 * err_part


def test_robertson_stiff_to_4e10():
    p0 = np.array([0.04, 1e4, 3e7])
    ts = 0.4 * 10.0 ** np.arange(0, 11)
    atol = np.array([1e-10, 1e-16, 1e-8])

    def make(q):
        return ODEProblem(robertson, [1.0, 0.0, 0.0], (0.0, 4e10), q)

    fs = forward_sensitivity(make(p0), t_eval=ts, method="ESDIRK", rtol=1e-7, atol=atol)
    assert fs.success
    cols = []
    for j in range(3):  # relative steps: the parameters span 9 decades
        e = np.zeros(3)
        e[j] = 1e-5 * p0[j]
        hi = solve(make(p0 + e), method="BDF", t_eval=ts, rtol=1e-11, atol=atol * 1e-4).y
        lo = solve(make(p0 - e), method="BDF", t_eval=ts, rtol=1e-11, atol=atol * 1e-4).y
        cols.append((hi - lo) / (2 * e[j]))
    ref = np.stack(cols, -1) * p0  # dy / dlog p
    np.testing.assert_allclose(fs.dy_dp[:9] * p0, ref[:9], atol=1e-4 * np.abs(ref[:9]).max())


def test_initial_values_chunks_and_exact_zeros(lv):
    kw = dict(t_eval=LV_T, method="ESDIRK", rtol=1e-8, atol=1e-10)
    fs = forward_sensitivity(lv, wrt="y0", **kw)
    np.testing.assert_allclose(fs.dy_dy0[0], np.eye(2), atol=1e-14)
    cols = []
    for j in range(2):
        e = np.zeros(2)
        e[j] = 1e-6
        ys = [
            solve(
                ODEProblem(lotka_volterra, lv.y0 + s * e, (0.0, 10.0), LV_P),
                method="DP8",
                t_eval=LV_T,
                rtol=1e-12,
                atol=1e-14,
            ).y
            for s in (1, -1)
        ]
        cols.append((ys[0] - ys[1]) / 2e-6)
    ref = np.stack(cols, -1)
    np.testing.assert_allclose(fs.dy_dy0, ref, atol=3e-5 * np.abs(ref).max())
    both = forward_sensitivity(lv, wrt="both", chunk=4, error_control="partial", **kw)
    one = forward_sensitivity(lv, wrt="both", chunk=1, error_control="partial", **kw)
    assert both.chunks == 2 and one.chunks == 6
    # same steps (partial); the corrector's stopping test sees the chunk's columns together,
    # so chunks agree to its tolerance, not to round-off
    np.testing.assert_allclose(one.dy_dp, both.dy_dp, atol=1e-7 * np.abs(both.dy_dp).max())
    np.testing.assert_allclose(one.dy_dy0, both.dy_dy0, atol=1e-7 * np.abs(both.dy_dy0).max())
    plain = solve(lv, **kw).stats["nsteps"]
    assert one.stats["nsteps"] == 6 * plain and both.stats["nsteps"] == 2 * plain
    prob = ODEProblem(unused_parameter, [1.0, 0.0], (0.0, 2.0), [0.7, 3.0])
    z = forward_sensitivity(prob, t_eval=[1.0, 2.0], method="ESDIRK")
    assert np.all(z.dy_dp[:, :, 1] == 0.0) and np.all(z.dy_dp[:, :, 0] != 0.0)


@pytest.mark.parametrize("method", ["Tsit5", "ESDIRK", "BDF"])
def test_plain_python_right_hand_side_gives_the_same_sensitivities(method):
    # compile=False: the integrators' Python twins and the numpy-level duals
    kw = dict(t_eval=[0.5, 1.0], method=method, rtol=1e-5, atol=1e-7)
    ref = forward_sensitivity(ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 1.0), LV_P), **kw)
    fs = forward_sensitivity(
        ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 1.0), LV_P, compile=False), **kw
    )
    assert fs.success
    np.testing.assert_allclose(fs.dy_dp, ref.dy_dp, rtol=1e-12, atol=1e-12)
