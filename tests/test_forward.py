"""Forward sensitivities against analytic derivatives and finite differences."""

import numpy as np
import pytest
import scipy.sparse as sp

import sensitivity as sn
from sensitivity.ode.problem import ODEProblem
from sensitivity.ode.solve import solve
from sensitivity.sens.forward import SensitivitySolver, forward_sensitivity
from tests.forward_problems import (
    LV_P,
    LV_T,
    fd_jacobian,
    linear,
    linear_exact,
    unused_parameter,
)
from tests.rhs_suite import lotka_volterra, reaction_diffusion, robertson


@pytest.fixture(scope="module")
def lv():
    return ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), LV_P)


@pytest.mark.parametrize("method", ["Tsit5", "DP5", "DP8", "BDF"])
def test_linear_ode_against_expm_and_convergence(method):
    p = np.array([0.3, 2.0, 0.5])
    y0 = np.array([1.0, 0.5])
    prob = ODEProblem(linear, y0, (0.0, 3.0), p)
    errors = []
    for rtol in (1e-5, 1e-8):
        fs = forward_sensitivity(
            prob, t_eval=[1.0, 3.0], method=method, rtol=rtol, atol=rtol * 1e-2
        )
        assert fs.success
        _, S = linear_exact(p, y0, 3.0)
        errors.append(np.abs(fs.dy_dp[-1] - S).max())
    assert errors[1] < 1e-5 and errors[1] < errors[0] / 20


@pytest.mark.parametrize("method", ["Tsit5", "BDF"])
@pytest.mark.parametrize("error_control", ["full", "partial"])
def test_lotka_volterra_against_finite_differences(lv, method, error_control):
    fs = forward_sensitivity(
        lv, t_eval=LV_T, method=method, rtol=1e-9, atol=1e-11, error_control=error_control
    )
    ref = fd_jacobian(
        lambda q: ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), q), LV_P, LV_T, "DP8"
    )
    np.testing.assert_allclose(fs.dy_dp, ref, atol=2e-5 * np.abs(ref).max())
    np.testing.assert_allclose(
        fs.y, solve(lv, method=method, t_eval=LV_T, rtol=1e-9, atol=1e-11).y, rtol=1e-5
    )


def test_partial_error_control_keeps_the_plain_steps(lv):
    plain = solve(lv, method="Tsit5", t_eval=LV_T, rtol=1e-6, atol=1e-8)
    fs = forward_sensitivity(
        lv, t_eval=LV_T, method="Tsit5", rtol=1e-6, atol=1e-8, error_control="partial"
    )
    assert fs.stats["nsteps"] == plain.stats["nsteps"]
    np.testing.assert_allclose(fs.y, plain.y, rtol=1e-12)
    full = forward_sensitivity(lv, t_eval=LV_T, method="Tsit5", rtol=1e-6, atol=1e-8)
    assert full.stats["nsteps"] >= plain.stats["nsteps"]


def test_explicit_sensitivities_are_the_derivative_of_the_discrete_map(lv):
    # fixed steps: max_step caps every step and loose tolerances accept them all
    kw = dict(method="Tsit5", rtol=1e-1, atol=1e3, first_step=0.01, max_step=0.01)
    ts = np.array([2.5, 5.0])
    fs = forward_sensitivity(lv, t_eval=ts, error_control="partial", **kw)
    assert fs.stats["nreject"] == 0
    cols = []
    for j in range(4):
        e = np.zeros(4)
        e[j] = 1e-6
        hi = solve(ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), LV_P + e), t_eval=ts, **kw).y
        lo = solve(ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), LV_P - e), t_eval=ts, **kw).y
        cols.append((hi - lo) / 2e-6)
    np.testing.assert_allclose(fs.dy_dp, np.stack(cols, -1), rtol=1e-8, atol=1e-9)


def test_robertson_stiff_to_4e10():
    p0 = np.array([0.04, 1e4, 3e7])
    ts = 0.4 * 10.0 ** np.arange(0, 11)
    atol = np.array([1e-10, 1e-16, 1e-8])
    prob = ODEProblem(robertson, [1.0, 0.0, 0.0], (0.0, 4e10), p0)
    fs = forward_sensitivity(prob, t_eval=ts, method="BDF", rtol=1e-7, atol=atol)
    assert fs.success

    def make(q):
        return ODEProblem(robertson, [1.0, 0.0, 0.0], (0.0, 4e10), q)

    # relative steps in p (they span 9 decades)
    cols = []
    for j in range(3):
        e = np.zeros(3)
        e[j] = 1e-5 * p0[j]
        hi = solve(make(p0 + e), method="BDF", t_eval=ts, rtol=1e-11, atol=atol * 1e-4).y
        lo = solve(make(p0 - e), method="BDF", t_eval=ts, rtol=1e-11, atol=atol * 1e-4).y
        cols.append((hi - lo) / (2 * e[j]))
    ref = np.stack(cols, -1)
    # compare each sensitivity scaled by its parameter (dy/dlog p), up to t = 4e8
    scaled = fs.dy_dp[:9] * p0
    np.testing.assert_allclose(scaled, ref[:9] * p0, atol=1e-4 * np.abs(ref[:9] * p0).max())


RD_N = 200
RD_P = np.array([0.01, 2.0])
RD_T = np.array([0.1, 0.5])


def reaction_diffusion_problem(p):
    x = np.linspace(0, 1, RD_N + 2)[1:-1]
    pattern = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(RD_N, RD_N), format="csr")
    y0 = np.exp(-100 * (x - 0.5) ** 2)
    return ODEProblem(reaction_diffusion, y0, (0.0, 0.5), p, jac_sparsity=pattern)


@pytest.fixture(scope="module")
def rd_fd():
    return fd_jacobian(
        reaction_diffusion_problem, RD_P, RD_T, "BDF", h=1e-5, rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("method, rtol", [("BDF", 1e-7), ("ESDIRK", 1e-6)])
def test_reaction_diffusion_pde_with_sparse_jacobian(rd_fd, method, rtol):
    # the banded LU runs in the kernels' Python twins: ESDIRK (order 2) at a looser rtol
    prob = reaction_diffusion_problem(RD_P)
    fs = forward_sensitivity(prob, t_eval=RD_T, method=method, rtol=rtol, atol=rtol * 1e-2)
    assert fs.success and fs.dy_dp.shape == (2, RD_N, 2)
    np.testing.assert_allclose(fs.dy_dp, rd_fd, atol=1e-4 * np.abs(rd_fd).max())


def test_initial_value_sensitivities_and_both(lv):
    fs = forward_sensitivity(lv, t_eval=LV_T, wrt="y0", method="Tsit5", rtol=1e-9, atol=1e-11)
    assert fs.dy_dp is None and fs.dy_dy0.shape == (21, 2, 2)
    np.testing.assert_allclose(fs.dy_dy0[0], np.eye(2), atol=1e-14)
    cols = []
    for j in range(2):
        e = np.zeros(2)
        e[j] = 1e-6
        hi = solve(
            ODEProblem(lotka_volterra, lv.y0 + e, (0.0, 10.0), LV_P),
            method="DP8",
            t_eval=LV_T,
            rtol=1e-12,
            atol=1e-14,
        ).y
        lo = solve(
            ODEProblem(lotka_volterra, lv.y0 - e, (0.0, 10.0), LV_P),
            method="DP8",
            t_eval=LV_T,
            rtol=1e-12,
            atol=1e-14,
        ).y
        cols.append((hi - lo) / 2e-6)
    ref = np.stack(cols, -1)
    np.testing.assert_allclose(fs.dy_dy0, ref, atol=2e-5 * np.abs(ref).max())
    both = forward_sensitivity(
        lv, t_eval=LV_T, wrt="both", method="Tsit5", rtol=1e-9, atol=1e-11, chunk=4
    )
    assert both.chunks == 2
    np.testing.assert_allclose(both.dy_dy0, fs.dy_dy0, atol=1e-6)
    assert both.dy_dp.shape == (21, 2, 4)


@pytest.mark.parametrize("chunk", [1, 3, 4])
def test_chunking_does_not_change_the_answer(lv, chunk):
    ref = forward_sensitivity(lv, t_eval=LV_T, method="Tsit5", error_control="partial")
    fs = forward_sensitivity(lv, t_eval=LV_T, method="Tsit5", error_control="partial", chunk=chunk)
    np.testing.assert_allclose(fs.dy_dp, ref.dy_dp, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["Tsit5", "BDF"])
def test_a_parameter_that_does_not_enter_gives_exact_zeros(method):
    prob = ODEProblem(unused_parameter, [1.0, 0.0], (0.0, 2.0), [0.7, 3.0])
    fs = forward_sensitivity(prob, t_eval=[1.0, 2.0], method=method)
    assert np.all(fs.dy_dp[:, :, 1] == 0.0)
    assert np.all(fs.dy_dp[:, :, 0] != 0.0)


def test_initial_values_that_depend_on_parameters(lv):
    # y0 = (p0, 1): dy/dp0 gets dy/dy0 e_0 on top of the direct effect
    y0_dp = np.zeros((2, 4))
    y0_dp[0, 0] = 1.0
    fs = forward_sensitivity(lv, t_eval=LV_T, method="Tsit5", rtol=1e-10, atol=1e-12, y0_dp=y0_dp)
    plain = forward_sensitivity(lv, t_eval=LV_T, wrt="both", method="Tsit5", rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        fs.dy_dp[:, :, 0], plain.dy_dp[:, :, 0] + plain.dy_dy0[:, :, 0], atol=1e-6
    )


def test_reusable_solver_with_new_parameters(lv):
    solver = SensitivitySolver(lv, LV_T, "p", "Tsit5", 1e-8, 1e-10)
    q = LV_P * 1.1
    a = solver(p=q)
    b = forward_sensitivity(
        ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), q),
        t_eval=LV_T,
        method="Tsit5",
        rtol=1e-8,
        atol=1e-10,
    )
    np.testing.assert_allclose(a.dy_dp, b.dy_dp, rtol=1e-12, atol=1e-12)


def test_bad_input(lv):
    with pytest.raises(ValueError, match="wrt must be one of"):
        forward_sensitivity(lv, wrt="q")
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        forward_sensitivity(lv, chunk=0)
    with pytest.raises(ValueError, match="error_control must be one of"):
        forward_sensitivity(lv, error_control="some")
    with pytest.raises(ValueError, match="p must be finite"):
        SensitivitySolver(lv, LV_T)(p=np.array([1.0, np.nan, 1.0, 1.0]))
    with pytest.raises(ValueError, match="y0_dp must have shape"):
        forward_sensitivity(lv, y0_dp=np.zeros((3, 3)))
    assert sn.forward_sensitivity is forward_sensitivity
