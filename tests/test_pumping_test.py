"""The pumping-test example: its PDE, its fits and its derivatives, each checked independently.

* the quick mode runs and writes nothing;
* the PDE drawdown matches Theis (confined) and Hantush (leaky) to 1e-3 m;
* its fits agree with fits of the analytic solutions computed here with
  scipy.optimize.least_squares from the raw CSV files;
* the residual Jacobian from forward sensitivities agrees with central
  differences of the residuals; df/dp of the user's right-hand side agrees
  with central differences and its df/dy has the tridiagonal pattern.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import least_squares

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "geophysics" / "pumping_test"
SCRIPT = EXAMPLE / "pumping_test.py"
sys.path.insert(0, str(EXAMPLE))

import analytic  # noqa: E402
import pumping_test as pt  # noqa: E402
import radial_flow  # noqa: E402

# The published set-ups (Kruseman & de Ridder 1994); times of Oude Korendijk are minutes
CASES = {
    "oude_korendijk": ("pumping_test_oude_korendijk.csv", 788.0, 1.0 / 1440.0),
    "dalem": ("pumping_test_dalem.csv", 761.0, 1.0),
}


def read_csv(name):
    """(r, t in days, s) straight from the file, independently of the example's loader."""
    fname, Q, day = CASES[name]
    rows = [ln for ln in (EXAMPLE / fname).read_text().splitlines() if ln[:1].isdigit()]
    r, t, s = np.loadtxt(rows, delimiter=",", unpack=True)
    return r, t * day, s, Q


@pytest.fixture(scope="module")
def analytic_fits():
    """Least-squares fits of Theis / Hantush in log parameters, with their uncertainty."""
    out = {}
    for name, x0 in (("oude_korendijk", [100.0, 1e-3]), ("dalem", [1000.0, 1e-3, 500.0])):
        r, t, s, Q = read_csv(name)
        if len(x0) == 2:
            model = lambda p: analytic.theis(r, t, p[0], p[1], Q)  # noqa: E731
        else:
            model = lambda p: analytic.hantush(r, t, p[0], p[1], p[2], Q)  # noqa: E731
        res = least_squares(lambda x: model(np.exp(x)) - s, np.log(x0), xtol=1e-12, ftol=1e-12)
        assert res.success
        p = np.exp(res.x)
        J = res.jac / p  # d r / d theta
        dof = s.size - p.size
        cov = float(res.fun @ res.fun) / dof * np.linalg.inv(J.T @ J)
        err = np.sqrt(np.diag(cov))
        out[name] = dict(
            p=p,
            stderr=err,
            corr=cov[0, 1] / (err[0] * err[1]),
            rmse=np.sqrt(np.mean(res.fun**2)),
        )
    return out


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("pumping")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", "--outdir", str(outdir)],
        env=env,
        cwd=outdir,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout, outdir


def test_quick_mode_runs_and_checks_its_pde(quick_run):
    summary, stdout, outdir = quick_run
    assert summary["quick"] is True and summary["checks_passed"] is True
    assert list(outdir.iterdir()) == []  # no figures in quick mode, nothing else written
    for name, params in (("oude_korendijk", ["T", "S"]), ("dalem", ["T", "S", "c"])):
        fit = summary[name]
        assert sorted(fit["estimates"]) == sorted(params) == sorted(fit["stderr"])
        assert 0.0 < fit["max_error_vs_analytic_m"] < 1e-3
        assert fit["n_data"] == read_csv(name)[0].size
    assert "FAILED" not in stdout


@pytest.mark.parametrize("name", ["oude_korendijk", "dalem"])
def test_fit_agrees_with_analytic_fit(quick_run, analytic_fits, name):
    fit, ref = quick_run[0][name], analytic_fits[name]
    est = np.array(list(fit["estimates"].values()))
    err = np.array(list(fit["stderr"].values()))
    # the PDE carries ~1e-4 m of discretisation error: estimates move by a few tenths of
    # a percent, far inside their uncertainty (2.5-23 %)
    np.testing.assert_allclose(est, ref["p"], rtol=5e-3)
    assert np.all(np.abs(est - ref["p"]) < 0.05 * ref["stderr"])
    np.testing.assert_allclose(err, ref["stderr"], rtol=0.01)
    assert abs(fit["correlation_T_S"] - ref["corr"]) < 2e-3
    np.testing.assert_allclose(fit["rmse_m"], ref["rmse"], rtol=2e-3)


@pytest.mark.parametrize("name", ["oude_korendijk", "dalem"])
def test_pde_matches_theis_and_hantush(analytic_fits, name):
    r, t, _, Q = read_csv(name)
    p = analytic_fits[name]["p"]
    model = radial_flow.RadialFlowModel(Q, t.max(), p)
    radii = np.unique(r)
    times = [t[r == ri] for ri in radii]
    pde = model.readings(p, radii, times)
    for ri, ti, si in zip(radii, times, pde):
        if p.size == 2:
            exact = analytic.theis(ri, ti, p[0], p[1], Q)
        else:
            exact = analytic.hantush(ri, ti, p[0], p[1], p[2], Q)
        assert np.max(np.abs(si - exact)) < 1e-3
        assert np.max(np.abs(si - exact)) > 1e-7  # a real discretisation error, not a copy


def test_residual_jacobian_matches_central_differences():
    test = pt.load("dalem")
    p = pt.starting_values(test)
    # a coarser grid than the fits' (n = 60): the check is of the derivatives of the
    # discrete model, whatever its resolution
    model = radial_flow.RadialFlowModel(test.Q, test.t_end, p, radial_flow.radial_grid(10))
    objective = pt.build_objective(test, model, rtol=1e-10, atol=1e-12)
    x = np.log(p)  # the optimiser's variables: log T, log S, log c
    J = objective.residual_jac(x)
    h = 1e-4
    J_fd = np.empty_like(J)
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = h
        J_fd[:, j] = (objective.residuals(x + e) - objective.residuals(x - e)) / (2 * h)
    assert J.shape == (test.n_data, 3)
    for j in range(3):  # per column: the three parameters differ in effect by decades
        col = np.abs(J_fd[:, j]).max()
        assert col > 1e-4
        assert np.abs(J[:, j] - J_fd[:, j]).max() < 1e-6 * col  # observed: ~1e-8


def test_rhs_derivatives_and_sparsity():
    grid = radial_flow.radial_grid(10)
    f = radial_flow.radial_flow_rhs(grid, 761.0)
    rng = np.random.default_rng(0)
    y = rng.uniform(0.0, 1.0, grid.n)
    p = np.array([1500.0, 2e-3, 400.0])
    import sensitivity as sn

    prob = sn.ODEProblem(f, y, (0.0, 1.0), p, jac_sparsity=False)
    prob_py = sn.ODEProblem(f, y, (0.0, 1.0), p, jac_sparsity=False, compile=False)
    np.testing.assert_allclose(prob.rhs(0.0, y), prob_py.rhs(0.0, y), rtol=1e-14)
    Jp = prob.param_jacobian(0.0, y)
    Jp_fd = np.empty_like(Jp)
    for j in range(3):
        dp = np.zeros(3)
        dp[j] = 1e-6 * p[j]
        Jp_fd[:, j] = (prob.rhs(0.0, y, p + dp) - prob.rhs(0.0, y, p - dp)) / (2 * dp[j])
    np.testing.assert_allclose(Jp, Jp_fd, rtol=1e-6, atol=1e-8 * np.abs(Jp).max())
    J = prob.jacobian(0.0, y)
    pattern = sn.pde.flux_divergence_pattern(grid.n).toarray() != 0
    assert np.all(J[~pattern] == 0.0)
    np.testing.assert_allclose(J, prob_py.jacobian(0.0, y), rtol=1e-13)
    # the source: pumping at rate Q into cell 0 raises its drawdown at Q / (2 pi S V_0)
    dydt0 = prob.rhs(0.0, np.zeros(grid.n))
    assert dydt0[0] == pytest.approx(761.0 / (2 * np.pi * p[1] * grid.volume[0]), rel=1e-12)
    assert np.all(dydt0[1:] == 0.0)
