"""Rate-and-state friction parameters from a velocity step (spring-slider, synthetic data)
=======================================================================================

A quasi-static spring-slider with Dieterich-Ruina friction (aging or slip law,
:mod:`spring_slider`) slides in steady state at V0 = 1 um/s; the load point
then jumps to V1 = 10 um/s. The friction record (with Gaussian noise of a
fixed seed) is fitted for theta = (a, b, Dc, k, mu0) by ``sensitivity.fit``
(``least_squares``) with the Jacobian from forward sensitivities through BDF,
chained across the velocity step. The script reports the estimates with
standard errors and correlations, the RMSE, how far each estimate lies from
the known truth in standard errors, and checks the friction at the end of the
step against the steady state mu0 + (a - b) ln(V1 / V0).

Usage::

    python rate_and_state.py               # 1 um sampling; also fits the other law
    python rate_and_state.py --quick       # 2 um sampling, one fit (the test suite)
    python rate_and_state.py --law slip    # data and fit with the slip law
    python rate_and_state.py --json        # last line: estimates, errors, RMSE as JSON
    python rate_and_state.py --outdir DIR  # where the figures go (default: this folder)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import sensitivity as sn

try:
    HERE = Path(__file__).resolve().parent
except NameError:  # sphinx-gallery runs the script without __file__, from its folder
    HERE = Path.cwd()
sys.path.insert(0, str(HERE))  # spring_slider, when imported from elsewhere
from spring_slider import (  # noqa: E402
    LAWS,
    PARAMS,
    VelocityStep,
    VelocityStepObjective,
    steady_state_friction,
)

TRUTH = np.array([0.010, 0.015, 1.0e-5, 2.0e3, 0.60])  # a, b, Dc (m), k (1/m), mu0
V0, V1 = 1e-6, 1e-5  # load-point velocities before and after the step (m/s)
LENGTHS = (100e-6, 300e-6)  # load-point displacement before and after the step (m)
NOISE = 5e-4  # standard deviation of the friction noise
SEED = 20261126
UNITS = {"a": "", "b": "", "Dc": "m", "k": "1/m", "mu0": ""}


def synthetic(experiment, noise, seed):
    """Noise-free friction at TRUTH and the noisy record (fixed seed)."""
    clean = experiment(TRUTH, sensitivities=False)
    if not clean.success:
        raise RuntimeError(f"the synthetic experiment failed: {clean.message}")
    rng = np.random.default_rng(seed)
    return clean.mu, clean.mu + noise * rng.standard_normal(clean.mu.size)


def initial_guess(displacement, data):
    """Starting values read off the record, as one would by hand (no use of the truth).

    mu0: the mean friction before the step; a - b: the change of steady-state
    friction (the last 50 um); a: the peak above mu0 (the direct effect, an
    underestimate since the state already evolves before the peak); k: the
    slope of the first 6 um of the elastic rise, mu' = k (1 - V/V1) with V ~ V0;
    Dc: the distance over which the friction falls from its peak by 1 - 1/e of
    its drop to the new steady state.
    """
    L0, log_r = LENGTHS[0], np.log(V1 / V0)
    mu0 = data[displacement <= L0].mean()
    mu_ss = data[displacement >= displacement[-1] - 50e-6].mean()
    i_peak = int(np.argmax(data))
    a = max((data[i_peak] - mu0) / log_r, 1e-4)
    b = max(a - (mu_ss - mu0) / log_r, 1e-4)
    rise = (displacement > L0) & (displacement <= L0 + 6e-6)
    slope = np.polyfit(displacement[rise] - L0, data[rise] - mu0, 1)[0]
    k = max(slope / (1 - V0 / V1), 1.0)
    below = np.flatnonzero(data[i_peak:] < mu_ss + (data[i_peak] - mu_ss) / np.e)
    dc = displacement[i_peak + below[0]] - displacement[i_peak] if below.size else 10e-6
    return np.array([a, b, max(dc, 1e-7), k, mu0])


def fit_law(law, spacing, data, noise):
    """Fit theta to ``data`` with the given law; return (FitResult, experiment, fitted Run)."""
    experiment = VelocityStep([V0, V1], LENGTHS, spacing, law=law)
    start = initial_guess(experiment.displacement, data)
    # A too small Dc (k below the critical stiffness, which for the slip law and
    # large steps exceeds (b - a)/Dc) makes the quasi-static model blow up in finite
    # time (V -> infinity): least_squares needs a finite start, so lengthen Dc until
    # the step is simulated
    for _ in range(20):
        if experiment(start, sensitivities=False).success:
            break
        start[2] *= 1.5
    objective = VelocityStepObjective(experiment, data, sigma=noise)
    # a, b, Dc and k are positive and Dc, k span decades: fit their logarithms
    objective.with_transform([sn.Log()] * 4 + [None])
    res = sn.fit(objective, start, method="least_squares", names=list(PARAMS), progress=False,
                 x_scale="jac")  # fmt: skip
    # report the RMSE in friction units (the residuals are divided by the noise level)
    res.rmse_friction = res.rmse * noise
    res.start = start
    return res, experiment, experiment(res.x)


def steady_state_check(run, theta):
    """Friction at the end of the step minus mu0 + (a - b) ln(V1/V0)."""
    return float(run.mu[-1] - steady_state_friction(theta, V1, V0))


def report(res, law):
    print(f"\n{law} law: {res.message} ({res.nfev} evaluations)")
    start = ", ".join(f"{n}={v:.4g}" for n, v in zip(PARAMS, res.start))
    print(f"start (read off the data): {start}")
    print(f"{'':>5} {'true':>11} {'estimate':>11} {'std. error':>11} {'(est-true)/se':>14}")
    for i, name in enumerate(PARAMS):
        z = (res.x[i] - TRUTH[i]) / res.stderr[i]
        print(f"{name:>5} {TRUTH[i]:>11.5g} {res.x[i]:>11.5g} {res.stderr[i]:>11.3g} {z:>14.2f}"
              f"  {UNITS[name]}")  # fmt: skip
    print(f"RMSE {res.rmse_friction:.3e} (noise {NOISE:.1e}); correlation matrix:")
    for i, name in enumerate(PARAMS):
        print(f"{name:>5} " + " ".join(f"{c:>6.3f}" for c in res.correlation[i]))


def plot(outdir, run_fit, clean, data, res, law):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d_um = run_fit.displacement * 1e6
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(7.5, 6), sharex=True, height_ratios=[3, 1],
                                  constrained_layout=True)  # fmt: skip
    ax.plot(d_um, data, ".", ms=3, color="0.55", label=f"synthetic data (noise {NOISE:g})")
    ax.plot(d_um, clean, "k--", lw=1, label="true model")
    ax.plot(d_um, run_fit.mu, "C3", lw=1.5, label=f"fit ({law} law)")
    for v, txt in ((V0, "V0"), (V1, "V1")):
        ax.axhline(steady_state_friction(res.x, v, V0), color="C0", ls=":", lw=1)
        ax.text(d_um[-1] * 0.75, steady_state_friction(res.x, v, V0) + 4e-4,
                f"steady state at {txt} (fit)", ha="center", fontsize=8, color="C0")  # fmt: skip
    ax.axvline(LENGTHS[0] * 1e6, color="0.8", lw=1)
    ax.set(ylabel="friction mu", title=f"velocity step {V0 * 1e6:g} -> {V1 * 1e6:g} um/s")
    ax.legend(loc="upper right", fontsize=8)
    axr.plot(d_um, data - run_fit.mu, ".", ms=3, color="C3")
    axr.axhline(0, color="k", lw=0.8)
    axr.set(xlabel="load-point displacement (um)", ylabel="residual")
    fig.savefig(outdir / "friction_fit.png", dpi=110)

    fig, axes = plt.subplots(3, 1, figsize=(7.5, 6.5), sharex=True, constrained_layout=True)
    for ax, i, unit in zip(axes, (0, 1, 2), ("", "", " (1/m)")):
        ax.plot(d_um, run_fit.dmu[:, i], "C2")
        ax.axhline(0, color="0.7", lw=0.8)
        ax.axvline(LENGTHS[0] * 1e6, color="0.8", lw=1)
        ax.set_ylabel(f"d mu / d {PARAMS[i]}{unit}")
    axes[0].set_title("forward sensitivities at the estimate (BDF, chained across the step)")
    axes[-1].set_xlabel("load-point displacement (um)")
    fig.savefig(outdir / "sensitivities.png", dpi=110)

    fig, ax = plt.subplots(figsize=(5, 4.3), constrained_layout=True)
    im = ax.imshow(res.correlation, cmap="RdBu_r", vmin=-1, vmax=1)
    for i in range(5):
        for j in range(5):
            c = res.correlation[i, j]
            ax.text(j, i, f"{c:.2f}", ha="center", va="center", fontsize=9,
                    color="w" if abs(c) > 0.6 else "k")  # fmt: skip
    ax.set_xticks(range(5), PARAMS)
    ax.set_yticks(range(5), PARAMS)
    ax.set_title("parameter correlation")
    fig.colorbar(im, ax=ax)
    fig.savefig(outdir / "correlation.png", dpi=110)
    plt.close("all")
    return ["friction_fit.png", "sensitivities.png", "correlation.png"]


def main(argv=None):
    ap = argparse.ArgumentParser(description="rate-and-state velocity-step fit")
    ap.add_argument("--quick", action="store_true", help="2 um sampling, one law (test suite)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    ap.add_argument("--law", choices=sorted(LAWS), default="aging")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--outdir", type=Path, default=HERE,
                    help="folder for the figures (default: this example's folder)")  # fmt: skip
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    spacing = 2e-6 if args.quick else 1e-6
    experiment = VelocityStep([V0, V1], LENGTHS, spacing, law=args.law)
    clean, data = synthetic(experiment, NOISE, args.seed)
    print(f"spring-slider, {args.law} law, quasi-static; load point {V0 * 1e6:g} -> "
          f"{V1 * 1e6:g} um/s; {data.size} friction samples every "
          f"{spacing * 1e6:g} um")  # fmt: skip
    ss_true = steady_state_check(experiment(TRUTH, sensitivities=False), TRUTH)
    print(f"steady-state check (true model): mu(end) - [mu0 + (a-b) ln(V1/V0)] = {ss_true:.2e}")

    res, _, run_fit = fit_law(args.law, spacing, data, NOISE)
    report(res, args.law)
    ss_fit = steady_state_check(run_fit, res.x)
    print(f"steady-state check (fit): mu(end) - [mu0 + (a-b) ln(V1/V0)] = {ss_fit:.2e}")

    comparison = {args.law: res.rmse_friction}
    if not args.quick:  # the other law on the same data: which one the data prefer
        other = "slip" if args.law == "aging" else "aging"
        res_o, _, _ = fit_law(other, spacing, data, NOISE)
        comparison[other] = res_o.rmse_friction
        print(f"\nthe {other} law fitted to the same data: RMSE {res_o.rmse_friction:.3e} "
              f"(a={res_o.x[0]:.4g}, b={res_o.x[1]:.4g}, Dc={res_o.x[2]:.3g} m, "
              f"k={res_o.x[3]:.4g} 1/m)")  # fmt: skip

    figures = []
    if not args.no_plots:
        args.outdir.mkdir(parents=True, exist_ok=True)
        names = plot(args.outdir, run_fit, clean, data, res, args.law)
        figures = [str(args.outdir / f) for f in names]
        print("figures:", ", ".join(figures))
    summary = {
        "quick": args.quick,
        "law": args.law,
        "parameters": list(PARAMS),
        "units": [UNITS[p] or "1" for p in PARAMS],
        "true": dict(zip(PARAMS, TRUTH.tolist())),
        "estimates": dict(zip(PARAMS, res.x.tolist())),
        "stderr": dict(zip(PARAMS, res.stderr.tolist())),
        "correlation": res.correlation.tolist(),
        "rmse": res.rmse_friction,
        "noise": NOISE,
        "n_data": int(data.size),
        "success": bool(res.success),
        "nfev": res.nfev,
        "steady_state_error_true": ss_true,
        "steady_state_error_fit": ss_fit,
        "rmse_by_law": comparison,
        "seconds": time.perf_counter() - t0,
        "figures": figures,
    }
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
