"""The rate-and-state velocity-step example: physics, sensitivities and fit, checked independently.

Independent references used here: the analytic steady state mu0 + (a - b) ln(V/V0);
complex-step derivatives of the right-hand side and of a scipy solve_ivp (DOP853)
integration of the model written in the original variables (mu, theta) in plain numpy;
central differences of the example's own solves; a plain scipy least_squares fit with
finite-difference Jacobians over solve_ivp (LSODA).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import least_squares

import sensitivity as sn

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "examples" / "geophysics" / "rate_and_state"
sys.path.insert(0, str(FOLDER))
import rate_and_state as rs  # noqa: E402
import spring_slider as model  # noqa: E402

TRUTH = rs.TRUTH
# three segments (up-step, then a down-step during the transient) so that the chain
# rule across a boundary carries non-zero sensitivities
VELS, LENS = (1e-6, 1e-5, 3e-6), (10e-6, 40e-6, 30e-6)


# ---- the independent model: original variables (mu, theta), plain numpy, complex-safe ----


def _rhs_mu_theta(law, theta, v_lp, v0):
    a, b, dc, k, mu0 = theta

    def f(t, y):
        mu, th = y
        v = v0 * np.exp((mu - mu0 - b * np.log(v0 * th / dc)) / a)
        if law == "aging":
            dth = 1.0 - v * th / dc
        else:
            dth = -(v * th / dc) * np.log(v * th / dc)
        return np.array([k * (v_lp - v), dth])

    return f


def simulate_scipy(theta, law, t_segments, method="DOP853", rtol=1e-12, atol=1e-14):
    """Friction at the output times of each segment, integrated with scipy."""
    theta = np.asarray(theta)
    dtype = theta.dtype
    v0 = t_segments[0][0]  # the first segment's velocity is the reference velocity
    y = np.array([theta[4], theta[2] / v0], dtype=dtype)  # steady sliding at V0
    out, t0 = [], 0.0
    for v_lp, t in t_segments:
        f = _rhs_mu_theta(law, theta, v_lp, v0)
        sol = solve_ivp(f, (t0, t[-1]), y, method=method, t_eval=t, rtol=rtol, atol=atol)
        assert sol.success, sol.message
        out.append(sol.y[0])
        y, t0 = sol.y[:, -1], t[-1]
    return np.concatenate(out)


def _segments(exp):
    return [(v, t) for v, t, *_ in exp.segments]


@pytest.fixture(scope="module", params=["aging", "slip"])
def three_step(request):
    exp = model.VelocityStep(VELS, LENS, 2e-6, law=request.param, rtol=1e-10, atol=1e-12)
    return request.param, exp, exp(TRUTH)


# ---- physics ----------------------------------------------------------------------------


@pytest.mark.parametrize("law", ["aging", "slip"])
@pytest.mark.parametrize("theta", [TRUTH, [0.012, 0.008, 2e-5, 5e2, 0.7]])
def test_final_friction_is_the_analytic_steady_state(law, theta):
    # velocity weakening (b > a) and strengthening (b < a); 40 Dc after the step
    theta = np.asarray(theta)
    v0, v1 = 1e-6, 1e-5
    exp = model.VelocityStep([v0, v1], [20e-6, 40 * theta[2]], 2e-6, law=law)
    run = exp(theta, sensitivities=False)
    assert run.success
    expected = theta[4] + (theta[0] - theta[1]) * np.log(v1 / v0)
    assert model.steady_state_friction(theta, v1, v0) == pytest.approx(expected, abs=1e-15)
    assert abs(run.mu[-1] - expected) < 1e-8
    # ... and it is a real change of friction, (a - b) ln 10 >= 0.009, not a constant
    assert abs(run.mu[-1] - theta[4]) > 0.009
    # before the step the block slides steadily at mu0
    assert np.allclose(run.mu[run.displacement <= 20e-6], theta[4], atol=1e-12)


def test_log_variable_model_matches_the_original_variables(three_step):
    law, exp, run = three_step
    mu = simulate_scipy(TRUTH, law, _segments(exp), method="LSODA", rtol=1e-11, atol=1e-13)
    assert np.max(np.abs(run.mu - mu)) < 1e-8


# ---- derivatives ------------------------------------------------------------------------


@pytest.mark.parametrize("law", ["aging", "slip"])
def test_rhs_jacobians_against_complex_step(law):
    f = model.LAWS[law]
    p = np.array([0.01, 0.015, 1e-5, 2e3, 1e-5, 1e-6])
    y = np.array([0.7, -0.3])
    prob = sn.ODEProblem(f, y, (0.0, 1.0), p)
    h = 1e-30
    J_cs, Jp_cs = np.zeros((2, 2)), np.zeros((2, 6))
    for j in range(2):
        yc = y.astype(complex)
        yc[j] += 1j * h
        out = np.zeros(2, complex)
        f.py_func(0.0, yc, p.astype(complex), out)
        J_cs[:, j] = out.imag / h
    for j in range(6):
        pc = p.astype(complex)
        pc[j] += 1j * h * abs(p[j])
        out = np.zeros(2, complex)
        f.py_func(0.0, y.astype(complex), pc, out)
        Jp_cs[:, j] = out.imag / (h * abs(p[j]))
    np.testing.assert_allclose(prob.jacobian(0.0, y), J_cs, rtol=1e-13, atol=0)
    np.testing.assert_allclose(prob.param_jacobian(0.0, y), Jp_cs, rtol=1e-13, atol=1e-300)


def test_chained_sensitivities_against_complex_step(three_step):
    law, exp, run = three_step
    h = 1e-30
    for j in range(5):
        theta = TRUTH.astype(complex)
        theta[j] += 1j * h * TRUTH[j]
        dmu = simulate_scipy(theta, law, _segments(exp)).imag / (h * TRUTH[j])
        scale = np.abs(dmu).max()
        err = np.abs(run.dmu[:, j] - dmu).max() / scale
        assert err < 1e-7, (model.PARAMS[j], err)  # measured: <= 2e-9
    # the test is not vacuous: the third segment carries sensitivities in from the second
    third = exp.t > exp.segments[1][1][-1]
    assert (np.abs(run.dmu[third, :4]) * TRUTH[:4]).max(axis=0).min() > 1e-3


def test_chained_sensitivities_against_central_differences(three_step):
    law, exp, run = three_step
    for j in range(5):
        dh = 1e-5 * TRUTH[j]
        up, down = TRUTH.copy(), TRUTH.copy()
        up[j] += dh
        down[j] -= dh
        fd = (exp(up, False).mu - exp(down, False).mu) / (2 * dh)
        err = np.abs(run.dmu[:, j] - fd).max() / np.abs(fd).max()
        assert err < 5e-6, (model.PARAMS[j], err)  # measured: <= 4e-7 (FD error)


def test_chain_rule_agrees_with_initial_value_seeding(three_step):
    """dy/dp + dy/dy0 S (wrt="both") equals a solve seeded with y0_dp = S."""
    law, exp, run = three_step
    v_lp, t, _, _, _ = exp.segments[2]
    start = np.flatnonzero(exp.t == exp.segments[1][1][-1])[0]
    y0, S0 = run.y[start], np.zeros((2, 6))
    S0[:, :4] = run.dy[start]
    p = np.r_[TRUTH[:4], v_lp, VELS[0]]
    prob = sn.ODEProblem(model.LAWS[law], y0, (exp.segments[1][1][-1], t[-1]), p)
    fs = sn.forward_sensitivity(prob, t, method="BDF", rtol=1e-10, atol=1e-12, y0_dp=S0)
    assert fs.success
    np.testing.assert_allclose(fs.dy_dp[:, :, :4], run.dy[start + 1 :], rtol=1e-6, atol=1e-8)


def test_bad_experiment_set_up_is_refused():
    with pytest.raises(ValueError, match="law must be one of"):
        model.VelocityStep([1e-6], [1e-5], 1e-6, law="Dieterich")
    with pytest.raises(ValueError, match="multiple of spacing"):
        model.VelocityStep([1e-6, 1e-5], [1e-5, 2.5e-6], 1e-6)
    with pytest.raises(ValueError, match="positive"):
        model.VelocityStep([1e-6, -1e-5], [1e-5, 1e-5], 1e-6)
    exp = model.VelocityStep([1e-6], [4e-6], 1e-6)
    with pytest.raises(ValueError, match="data must have shape"):
        model.VelocityStepObjective(exp, np.zeros(3))


def test_a_run_away_slider_fails_cleanly():
    """Slip law with k below its large-step stability limit: V -> infinity in finite time."""
    theta = np.array([0.00675, 0.01174, 5e-6, 1791.0, 0.6])
    exp = model.VelocityStep([1e-6, 1e-5], [10e-6, 40e-6], 2e-6, law="slip")
    for sens in (False, True):
        run = exp(theta, sensitivities=sens)
        assert not run.success and "V_lp = 1e-05" in run.message
    # scipy agrees that the model itself runs away (not a solver artefact)
    f = _rhs_mu_theta("slip", theta, 1e-5, 1e-6)
    t_step = exp.segments[0][1][-1]
    y = np.array([theta[4], theta[2] / 1e-6])
    assert solve_ivp(f, (t_step, t_step + 4.0), y, method="Radau", rtol=1e-8).status == -1
    obj = model.VelocityStepObjective(exp, np.zeros(exp.t.size))
    assert np.isinf(obj.fun(theta)) and np.isnan(obj.residuals(theta)).all()
    assert obj.failures == 1


# ---- the fit ----------------------------------------------------------------------------


def test_quick_mode_runs(tmp_path):
    pytest.importorskip("matplotlib")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    out = subprocess.run(
        [sys.executable, str(FOLDER / "rate_and_state.py"), "--quick", "--json",
         "--outdir", str(tmp_path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout.strip().splitlines()[-1])
    assert s["success"] and s["quick"] and s["law"] == "aging"
    assert 0.8 * s["noise"] < s["rmse"] < 1.2 * s["noise"]  # fits down to the noise
    for name in model.PARAMS:
        assert abs(s["estimates"][name] - s["true"][name]) < 4 * s["stderr"][name], name
        assert 0 < s["stderr"][name] < 0.05 * abs(s["true"][name]), name  # well resolved
    assert abs(s["steady_state_error_true"]) < 1e-8
    assert abs(s["steady_state_error_fit"]) < 1e-8
    C = np.array(s["correlation"])
    assert np.allclose(C, C.T) and np.allclose(np.diag(C), 1) and np.all(np.abs(C) <= 1 + 1e-9)
    names = ["friction_fit.png", "sensitivities.png", "correlation.png"]
    for name in names:
        assert (tmp_path / name).stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # nothing else written


@pytest.mark.parametrize("law", ["aging", "slip"])
def test_standard_errors_match_the_scatter_over_noise_realisations(law):
    """Refit 12 noise realisations: every estimate within 4 standard errors of the truth,
    and the spread of the estimates agrees with the reported standard errors."""
    exp = model.VelocityStep([rs.V0, rs.V1], rs.LENGTHS, 4e-6, law=law)
    est, se = [], []
    for seed in range(12):
        _, data = rs.synthetic(exp, rs.NOISE, seed)
        res, _, _ = rs.fit_law(law, 4e-6, data, rs.NOISE)
        assert res.success
        assert np.all(np.abs(res.x - TRUTH) < 4 * res.stderr), (seed, res.x, res.stderr)
        est.append(res.x)
        se.append(res.stderr)
    ratio = np.std(est, axis=0, ddof=1) / np.mean(se, axis=0)
    assert np.all((ratio > 0.5) & (ratio < 1.6)), ratio  # chi(11)/sqrt(11) 99 % range


def test_fit_agrees_with_scipy_least_squares_over_solve_ivp():
    """Same data, independent model code and finite-difference Jacobians."""
    spacing = 2e-6
    exp = model.VelocityStep([rs.V0, rs.V1], rs.LENGTHS, spacing, law="aging")
    _, data = rs.synthetic(exp, rs.NOISE, rs.SEED)
    res, _, _ = rs.fit_law("aging", spacing, data, rs.NOISE)
    segs = _segments(exp)

    def residuals(z):  # z = (log a, log b, log Dc, log k, mu0)
        theta = np.r_[np.exp(z[:4]), z[4]]
        return (simulate_scipy(theta, "aging", segs, "LSODA", 1e-10, 1e-12) - data) / rs.NOISE

    z0 = np.r_[np.log(res.start[:4]), res.start[4]]
    ref = least_squares(residuals, z0, method="trf", diff_step=1e-6, x_scale="jac")
    theta_ref = np.r_[np.exp(ref.x[:4]), ref.x[4]]
    assert ref.success
    assert np.all(np.abs(res.x - theta_ref) < 0.02 * res.stderr), (res.x, theta_ref)
    rmse_ref = np.sqrt(np.mean(ref.fun**2)) * rs.NOISE
    assert abs(res.rmse_friction - rmse_ref) < 1e-4 * rmse_ref
