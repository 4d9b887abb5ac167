"""The magnetotelluric example: its ODE against independent impedances, its gradients, quick mode.

The layered-earth reference here is a 2x2 propagator of (E, H) through the layers in
plain numpy, written independently of the example's Wait recursion (same physics,
different algebra); the example's ODE and its recursion must both match it.
"""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import sensitivity as sn

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "geophysics" / "magnetotelluric_1d"
SCRIPT = EXAMPLE / "magnetotelluric_1d.py"
sys.path.insert(0, str(EXAMPLE))
import mt1d  # noqa: E402

MU0 = 4e-7 * np.pi


def propagator_impedance(periods, rho, thickness):
    """Surface impedance E/H (e^{+i omega t}) by propagating (E, H) up through the layers."""
    out = []
    for T in periods:
        iwm = 2j * np.pi / T * MU0
        zeta = np.sqrt(iwm * rho)  # intrinsic impedances
        k = np.sqrt(iwm / rho)  # wavenumbers
        v = np.array([zeta[-1], 1.0])  # (E, H) at the top of the basement: E/H = zeta_b
        for j in range(len(thickness) - 1, -1, -1):
            c, s = np.cosh(k[j] * thickness[j]), np.sinh(k[j] * thickness[j])
            v = np.array([[c, zeta[j] * s], [s / zeta[j], c]]) @ v
            v = v / np.abs(v).max()  # the growing mode would overflow in thick layers
        out.append(v[0] / v[1])
    return np.array(out)


@pytest.fixture(scope="module")
def sounding():
    return mt1d.read_sounding()


def layered_model(layers, seed):
    """A rough model: a smooth trend plus 0.4-decade random jumps, 0.3 ... 3e4 ohm m."""
    rng = np.random.default_rng(seed)
    m = 2.0 + 1.5 * np.sin(np.arange(layers.n) / 6.0) + 0.4 * rng.standard_normal(layers.n)
    return np.clip(m, -0.5, 4.5)


def test_wait_recursion_matches_propagator(sounding):
    layers = mt1d.Layers(n=60)
    m = layered_model(layers, 1)
    Z_ref = propagator_impedance(sounding.periods, 10.0**m, layers.thickness)
    Z = mt1d.wait_impedance(sounding.periods, 10.0**m, layers.thickness)
    assert np.max(np.abs(Z / Z_ref - 1.0)) < 1e-12


@pytest.mark.parametrize("seed", [1, 2])
def test_ode_matches_layered_earth(sounding, seed):
    # rtol 1e-8 gives |dZ/Z| ~ 1e-7 on these rough models (60 jumps of up to a decade)
    layers = mt1d.Layers(n=60)
    m = layered_model(layers, seed)
    Z_ref = propagator_impedance(sounding.periods, 10.0**m, layers.thickness)
    Z = mt1d.ode_impedance(layers, sounding.periods, m, rtol=1e-8, atol=1e-10)
    assert np.max(np.abs(Z / Z_ref - 1.0)) < 1e-6
    rho_a, phase = mt1d.apparent(Z, sounding.periods)
    rho_ref, phase_ref = mt1d.apparent(Z_ref, sounding.periods)
    assert np.max(np.abs(rho_a / rho_ref - 1.0)) < 2e-6
    assert np.max(np.abs(phase - phase_ref)) < 1e-4  # degrees


@pytest.mark.parametrize("rho", [1.0, 100.0])
def test_uniform_halfspace(sounding, rho):
    # Started from a wrong value (w = 2 - i or 0.3 + 0.2i instead of 1) at 400 km, the
    # Riccati flow must forget it: rho_a = rho and phase 45 deg at the periods whose skin
    # depth 503 sqrt(rho T) m is below 40 km (ten or more skin depths to the start).
    layers = mt1d.Layers(n=30)
    m = np.full(layers.n, np.log10(rho))
    periods = sounding.periods[503.0 * np.sqrt(rho * sounding.periods) < 40e3]
    assert periods.size >= 5
    for y0 in ([2.0, -1.0], [0.3, 0.2]):
        Z = mt1d.ode_impedance(layers, periods, m, rtol=1e-9, atol=1e-11, y0=np.array(y0))
        rho_a, phase = mt1d.apparent(Z, periods)
        assert np.max(np.abs(rho_a / rho - 1.0)) < 1e-6
        assert np.max(np.abs(phase - 45.0)) < 1e-4


def test_determinant_errors_against_monte_carlo(sounding):
    # circular complex Gaussian errors of the file's variances on the four elements
    raw = mt1d._read_csv(mt1d.DATA)
    unit = 1e3 * MU0
    rng = np.random.default_rng(7)
    for i in (0, 16, 32):
        el, noise = {}, {}
        for k in ("Zxx", "Zxy", "Zyx", "Zyy"):
            el[k] = unit * (raw[f"{k}_re"][i] + 1j * raw[f"{k}_im"][i])
            sd = unit * np.sqrt(raw[f"var_{k}"][i] / 2.0)
            noise[k] = el[k] + sd * (rng.standard_normal(40000) + 1j * rng.standard_normal(40000))
        Zd = np.sqrt(noise["Zxx"] * noise["Zyy"] - noise["Zxy"] * noise["Zyx"])
        assert abs(np.mean(Zd) / sounding.Z[i] - 1.0) < 0.01
        mc = np.std(np.abs(Zd)) / np.abs(sounding.Z[i])  # radial spread of |Z|
        assert abs(mc / sounding.rel_error[i] - 1.0) < 0.05


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="n must be an integer >= 3"):
        mt1d.Layers(n=2)
    with pytest.raises(ValueError, match="z1 < z_bottom"):
        mt1d.Layers(z1=5e5)
    with pytest.raises(ValueError, match="floor must lie in"):
        mt1d.read_sounding(floor=1.5)


@pytest.fixture(scope="module")
def small_problem(sounding):
    """9 layers, 5 periods, tight tolerances: cheap enough for finite differences."""
    layers = mt1d.Layers(n=9, z1=500.0, z_bottom=200e3)
    pick = slice(0, None, 8)
    sub = replace(sounding, periods=sounding.periods[pick], Z=sounding.Z[pick],
                  rel_error=sounding.rel_error[pick], data=sounding.data[pick],
                  sd=sounding.sd[pick])  # fmt: skip
    m = 1.5 + 0.4 * np.cos(np.arange(layers.n) / 2.0)  # layered: never a uniform stretch
    objective = mt1d.data_objective(sub, layers, m, rtol=1e-10, atol=1e-12)
    return objective, m


def test_adjoint_gradient_vs_forward_and_differences(small_problem):
    objective, m = small_problem
    g_adj = objective.jac(m)  # discrete adjoint (gradient="adjoint", Tsit5)
    r = objective.residuals(m)
    J = objective.residual_jac(m)  # forward sensitivities (dual numbers)
    g_fwd = J.T @ r
    assert np.linalg.norm(g_adj - g_fwd) < 1e-7 * np.linalg.norm(g_fwd)
    # per-period cross-check through the library's own by-kind gradients
    for part in objective.parts[:2]:
        ga, gf = part.gradient_by("adjoint", m), part.gradient_by("forward", m)
        assert np.linalg.norm(ga - gf) < 1e-7 * np.linalg.norm(gf)
    h = 1e-4
    eye = np.eye(m.size)
    fd = np.array([(objective.fun(m + h * e) - objective.fun(m - h * e)) / (2 * h) for e in eye])
    assert np.linalg.norm(g_adj - fd) < 1e-5 * np.linalg.norm(fd)
    # the residual Jacobian column by column against central differences of the residuals
    jfd = np.column_stack(
        [(objective.residuals(m + h * e) - objective.residuals(m - h * e)) / (2 * h) for e in eye]
    )
    assert np.abs(J - jfd).max() < 1e-5 * np.abs(J).max()


def test_adjoint_gradient_taylor(small_problem):
    objective, m = small_problem
    g = objective.jac(m)
    d = np.random.default_rng(3).standard_normal(m.size)
    # eps from 4e-3 down to 1.25e-4: small enough that a gradient 0.1 % off drops the
    # rate below 1.9 (measured: 1.76), large enough to stay above the solves' noise (rtol 1e-10)
    res = sn.testing.taylor_test(objective.fun, m, g, direction=d, eps0=4e-3, steps=6)
    assert res.passed, res.rates


def test_quick_mode(tmp_path):
    pytest.importorskip("matplotlib")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", "--outdir", str(tmp_path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(s["log10_rho"]) == s["n_layers"] == len(s["layer_top_m"])
    assert s["n_data"] == 66
    checks = s["checks"]
    assert checks["wait_max_rel_error"] < 1e-6 and checks["wait_max_rel_error_final"] < 1e-6
    assert checks["halfspace_rho_rel_error"] < 1e-8
    assert checks["halfspace_phase_error_deg"] < 1e-6
    assert checks["adjoint_vs_forward_start"] < 1e-3
    assert checks["adjoint_vs_forward_final"] < 1e-3
    # the fit: from a poor start to Occam's target chi^2/N <= 1, without gross over-fitting
    assert s["chi2_start"] / s["n_data"] > 5.0
    assert 0.3 < s["chi2_per_datum"] <= 1.0
    assert abs(s["chi2"] - s["rmse_normalised"] ** 2 * s["n_data"]) < 1e-6 * s["chi2"]
    chi2 = [f["chi2"] for f in s["sweep"]]
    rough = [f["roughness"] for f in s["sweep"]]
    assert chi2 == sorted(chi2, reverse=True) and rough == sorted(rough)  # weight trades them
    names = ["sounding.png", "models.png", "sensitivity.png"]
    for name in names:
        assert (tmp_path / name).stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # nothing else written
