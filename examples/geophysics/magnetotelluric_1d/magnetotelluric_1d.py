"""1-D Occam inversion of the magnetotelluric sounding of USMTArray station NMX20
===============================================================================

The surface impedance of a layered earth comes from the impedance Riccati ODE,
integrated from a basement half-space at 400 km up to the surface for each of
the 33 periods (4.7 s to 8 h) of the station (``mt1d.py``). The model is 60
log10-resistivities (a top layer of 200 m, 58 log-spaced layers down to 400 km,
the basement); the data are log10 rho_a and the phase of the determinant
impedance with a 5 % error floor on abs(Z). L-BFGS-B (scipy) minimises
``chi2 / 2 + beta / 2 * sum((D m)**2)`` (D: first differences between layers)
with the gradient of chi2 from the discrete adjoint of every period's solve, for
a decreasing sequence of weights beta (each fit starts from the previous one);
Occam's choice is the smoothest model (largest beta) with chi2 / N <= 1.

Checks printed (and in ``--json``): the ODE against Wait's recursion and a
uniform half-space; the adjoint gradient against forward sensitivities (dual
numbers).

Usage::

    python magnetotelluric_1d.py            # 60 layers, 5 weights (a few minutes)
    python magnetotelluric_1d.py --quick    # 24 layers, 2 weights
    python magnetotelluric_1d.py --json     # last line: the estimates as JSON
    python magnetotelluric_1d.py --outdir DIR   # where the figures go (default: this folder)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

import sensitivity as sn

try:
    HERE = Path(__file__).resolve().parent
except NameError:  # sphinx-gallery runs the script without __file__, from its folder
    HERE = Path.cwd()
sys.path.insert(0, str(HERE))  # mt1d, when imported from elsewhere
from mt1d import (  # noqa: E402
    Layers,
    apparent,
    data_objective,
    ode_impedance,
    predicted,
    read_sounding,
    wait_impedance,
)

M_BOUNDS = (-2.0, 6.0)  # log10 rho (ohm m): wide enough never to bind on these data
TARGET = 1.0  # Occam's target chi^2 / N
FTOL = 1e-6  # L-BFGS-B stops when F falls by less than this fraction in an iteration
FIRST_STEP = 0.2  # largest change of log10 rho in L-BFGS-B's first trial step


def starting_model(sounding, layers):
    """log10 rho from the short-period to the long-period mean of log10 rho_a, linear in layers.

    Not uniform on purpose: over a uniform model the impedance ODE is at rest (w = 1
    everywhere), the explicit solver then takes a few huge steps beyond its stability
    limit, and the exact derivative of that computation (the discrete adjoint) is
    meaningless (measured: off by 1e14). Any layering makes the steps resolve the layers.
    """
    lo, hi = sounding.data[:3, 0].mean(), sounding.data[-3:, 0].mean()
    return np.linspace(lo, hi, layers.n)


def physics_checks(sounding, layers, m, rtol):
    """Max relative error |Z_ode / Z_wait - 1| at m, and the half-space check (rho, 45 deg)."""
    Z_ode = ode_impedance(layers, sounding.periods, m, rtol=rtol, atol=rtol * 1e-2)
    Z_wait = wait_impedance(sounding.periods, 10.0**m, layers.thickness)
    wait_err = float(np.max(np.abs(Z_ode / Z_wait - 1.0)))
    # uniform half-space of 100 ohm m, started from w = 2 (a wrong value) at depth: the
    # Riccati flow forgets the start within a few skin depths (the reason to start deep)
    uniform = np.full(layers.n, 2.0)
    Z_hs = ode_impedance(layers, sounding.periods[:1], uniform, rtol=rtol, atol=rtol * 1e-2,
                         y0=np.array([2.0, 0.0]))  # fmt: skip
    rho_a, phase = apparent(Z_hs, sounding.periods[:1])
    return {
        "wait_max_rel_error": wait_err,
        "halfspace_rho_rel_error": float(abs(rho_a[0] / 100.0 - 1.0)),
        "halfspace_phase_error_deg": float(abs(phase[0] - 45.0)),
        "rtol": rtol,
    }


def gradient_check(objective, m):
    """Relative difference of the adjoint gradient and J^T r by forward sensitivities."""
    g_adj = objective.jac(m)
    g_fwd = objective.residual_jac(m).T @ objective.residuals(m)
    return float(np.linalg.norm(g_adj - g_fwd) / np.linalg.norm(g_fwd))


def occam_sweep(objective, layers, m0, weights, maxiter, log):
    """L-BFGS-B fits for decreasing weights, each warm-started from the previous one.

    L-BFGS-B runs on x = m / s: its first trial step is -grad (unit Hessian), which
    in m would jump by the gradient itself (hundreds of decades here) into models
    where the solves fail; s = sqrt(FIRST_STEP / max|grad|) makes that step change
    log10 rho by at most FIRST_STEP. Later steps use its own curvature pairs.
    """
    fits, m = [], m0.copy()
    n_data = objective.n_data
    for beta in weights:
        total = objective + sn.Tikhonov(layers.n, order=1, weight=beta)
        t0 = time.perf_counter()
        s = np.sqrt(FIRST_STEP / np.abs(total.jac(m)).max())

        def fun(x, total=total, s=s):
            f, g = total.fun_and_jac(s * x)
            return f, s * g

        res = minimize(fun, m / s, jac=True, method="L-BFGS-B",
                       bounds=[(M_BOUNDS[0] / s, M_BOUNDS[1] / s)] * layers.n,
                       options={"maxiter": maxiter, "ftol": FTOL})  # fmt: skip
        m = s * res.x
        chi2 = 2.0 * objective.fun(m)
        rough = float(np.sum(np.diff(m) ** 2))
        fits.append({"weight": float(beta), "m": m.copy(), "chi2": chi2,
                     "chi2_per_datum": chi2 / n_data, "roughness": rough,
                     "iterations": int(res.nit), "evaluations": int(res.nfev),
                     "message": str(res.message)})  # fmt: skip
        log(f"  beta {beta:8.3g}: chi2/N {chi2 / n_data:6.3f}, roughness {rough:7.4f}, "
            f"{res.nit} iterations, {res.nfev} evaluations, {time.perf_counter() - t0:.1f} s "
            f"({res.message})")  # fmt: skip
    fit_ok = [f for f in fits if f["chi2_per_datum"] <= TARGET]
    chosen = fit_ok[0] if fit_ok else min(fits, key=lambda f: f["chi2"])
    return fits, chosen


def plot(outdir, sounding, layers, fits, chosen, response, J):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = sounding.periods
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6.5, 7), sharex=True, constrained_layout=True)
    rho, sd_log = 10.0 ** sounding.data[:, 0], sounding.sd[:, 0]
    yerr = [rho * (1 - 10.0**-sd_log), rho * (10.0**sd_log - 1)]
    ax1.errorbar(T, rho, yerr=yerr, fmt="o", ms=4, capsize=2, label="NMX20 (determinant)")
    ax2.errorbar(T, sounding.data[:, 1], yerr=sounding.sd[:, 1], fmt="o", ms=4, capsize=2)
    for f, resp in zip(fits, response):
        style = "-" if f is chosen else ":"
        lab = f"beta = {f['weight']:.3g}, chi2/N = {f['chi2_per_datum']:.2f}"
        ax1.loglog(T, 10.0 ** resp[:, 0], style, label=lab)
        ax2.semilogx(T, resp[:, 1], style)
    ax1.set(ylabel="apparent resistivity (ohm m)", title="NMX20 sounding and model responses")
    ax2.set(xlabel="period (s)", ylabel="phase (degrees)")
    ax1.legend(fontsize=7)
    fig.savefig(outdir / "sounding.png", dpi=110)

    fig, ax = plt.subplots(figsize=(5, 6), constrained_layout=True)
    z = np.concatenate([[layers.z1 / 4], layers.interfaces, [layers.z_bottom * 1.5]]) / 1e3
    for f in fits:
        style = "-" if f is chosen else ":"
        label = f"beta = {f['weight']:.3g}" + (" (Occam)" if f is chosen else "")
        # layer k is a vertical segment at rho_k from its top z[k] to its bottom z[k + 1]
        ax.plot(np.repeat(10.0 ** f["m"], 2), np.column_stack([z[:-1], z[1:]]).ravel(),
                ls=style, label=label)  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="resistivity (ohm m)", ylabel="depth (km)",
           title="models for several regularisation weights")  # fmt: skip
    ax.invert_yaxis()
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=7)
    fig.savefig(outdir / "models.png", dpi=110)

    fig, axes = plt.subplots(1, 2, figsize=(11, 5), constrained_layout=True, sharey=True)
    edges = np.log10(np.concatenate([[layers.z1 / 4], layers.interfaces, [layers.z_bottom * 1.5]]))
    tl = np.log10(T)
    tedges = np.concatenate([[1.5 * tl[0] - 0.5 * tl[1]], 0.5 * (tl[1:] + tl[:-1]),
                             [1.5 * tl[-1] - 0.5 * tl[-2]]])  # fmt: skip
    titles = ("d log10 rho_a / d log10 rho", "d phase / d log10 rho (deg)")
    for ax, k, name in zip(axes, (0, 1), titles):
        S = J[k::2]
        lim = np.abs(S).max()
        im = ax.pcolormesh(edges, tedges, S, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set(title=name, xlabel="log10 depth of the layer top (m; top layer from z1/4)")
        fig.colorbar(im, ax=ax)
    axes[0].set_ylabel("log10 period (s)")
    fig.suptitle("sensitivity matrix at the Occam model (forward sensitivities)")
    fig.savefig(outdir / "sensitivity.png", dpi=110)
    plt.close("all")
    return ["sounding.png", "models.png", "sensitivity.png"]


def main(argv=None):
    ap = argparse.ArgumentParser(description="1-D Occam inversion of MT station NMX20")
    ap.add_argument("--quick", action="store_true", help="24 layers, 2 weights (test suite)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    ap.add_argument("--floor", type=float, default=0.05, help="relative error floor on |Z|")
    ap.add_argument("--outdir", type=Path, default=HERE,
                    help="folder for the figures (default: this example's folder)")  # fmt: skip
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    sounding = read_sounding(floor=args.floor)
    if args.quick:
        layers, weights, maxiter = Layers(n=24), [1000.0, 300.0], 60
    else:
        layers, weights, maxiter = Layers(n=60), [3000.0, 1000.0, 300.0, 100.0, 30.0], 200
    rtol = 1e-7  # the solves' noise (~rtol) then stays below L-BFGS-B's ftol
    print(
        f"NMX20: {sounding.periods.size} periods {sounding.periods[0]:.3g}-"
        f"{sounding.periods[-1]:.3g} s, determinant impedance, error floor "
        f"{100 * args.floor:g} % on |Z|; {layers.n} layers to {layers.z_bottom / 1e3:g} km"
    )
    m0 = starting_model(sounding, layers)
    objective = data_objective(sounding, layers, m0, rtol=rtol, atol=rtol * 1e-2)
    checks = physics_checks(sounding, layers, m0, rtol=1e-8)
    checks["adjoint_vs_forward_start"] = gradient_check(objective, m0)
    print(f"checks: ODE vs Wait's recursion max |dZ/Z| {checks['wait_max_rel_error']:.2e} "
          f"(rtol 1e-8); half-space rho_a {checks['halfspace_rho_rel_error']:.1e} rel, phase "
          f"{checks['halfspace_phase_error_deg']:.1e} deg off 45; adjoint vs forward gradient "
          f"{checks['adjoint_vs_forward_start']:.1e}")  # fmt: skip
    print(f"Occam sweep (L-BFGS-B, adjoint gradients, rtol {rtol:g}):")
    fits, chosen = occam_sweep(objective, layers, m0, weights, maxiter, print)
    m = chosen["m"]
    checks["adjoint_vs_forward_final"] = gradient_check(objective, m)
    final = physics_checks(sounding, layers, m, 1e-8)
    checks["wait_max_rel_error_final"] = final["wait_max_rel_error"]
    # sensitivity matrix d(log10 rho_a, phase) / d log10 rho: the residual Jacobian x sd
    Jw = np.asarray(objective.residual_jac(m))
    J = Jw * sounding.sd.reshape(-1, 1)
    # linearised posterior sd of log10 rho: the Gaussian reading of the regularised misfit
    # (smoothness prior of the chosen weight), H = Jw^T Jw + beta D^T D
    D = np.diff(np.eye(layers.n), axis=0)
    sd_m = np.sqrt(np.diag(np.linalg.inv(Jw.T @ Jw + chosen["weight"] * D.T @ D)))
    response = [predicted(objective, sounding, f["m"]) for f in fits]
    r = objective.residuals(m)
    print(f"Occam model: beta {chosen['weight']:g}, chi2/N {chosen['chi2_per_datum']:.3f}, "
          f"RMS of normalised residuals {np.sqrt(np.mean(r**2)):.3f}; adjoint vs forward "
          f"gradient {checks['adjoint_vs_forward_final']:.1e}")  # fmt: skip
    figures = []
    if not args.no_plots:
        args.outdir.mkdir(parents=True, exist_ok=True)
        names = plot(args.outdir, sounding, layers, fits, chosen, response, J)
        figures = [str(args.outdir / f) for f in names]
        print("figures:", ", ".join(figures))
    summary = {
        "quick": args.quick,
        "n_layers": layers.n,
        "n_data": int(objective.n_data),
        "error_floor": args.floor,
        "layer_top_m": [0.0] + layers.interfaces.tolist(),
        "log10_rho": m.tolist(),
        "log10_rho_sd": sd_m.tolist(),
        "weight": chosen["weight"],
        "chi2": chosen["chi2"],
        "chi2_per_datum": chosen["chi2_per_datum"],
        "rmse_normalised": float(np.sqrt(np.mean(r**2))),
        "rmse_log10_rho_a": float(np.sqrt(np.mean((r[0::2] * sounding.sd[:, 0]) ** 2))),
        "rmse_phase_deg": float(np.sqrt(np.mean((r[1::2] * sounding.sd[:, 1]) ** 2))),
        "chi2_start": 2.0 * objective.fun(m0),
        "sweep": [
            {k: v for k, v in f.items() if k != "m"} | {"log10_rho": f["m"].tolist()} for f in fits
        ],
        "checks": checks,
        "seconds": time.perf_counter() - t_start,
        "figures": figures,
    }
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
