"""Full-waveform inversion of the Camembert model (cross-hole transmission)
=========================================================================

A disc of 3000 m/s in a 2500 m/s background is recovered from the pressure
recorded at 101 receivers on the right for 9 sources on the left, starting from
the homogeneous background. The misfit gradient with respect to the velocity
of every cell (10201 unknowns) comes from the exact discrete adjoint of the
wave simulation (:mod:`sensitivity.pde.wave`), at the cost of about three
simulations per shot. Two optimisers get the same budget of misfit/gradient
evaluations: gradient descent (each step changes the velocity by at most
50 m/s) and L-BFGS-B (scipy), both within 2000-3500 m/s.

Usage::

    python fwi_camembert.py            # the set-up of the README (181 x 181 nodes)
    python fwi_camembert.py --quick    # a coarser grid (20 m), a few seconds
    python fwi_camembert.py --json     # last line: objective per iteration, as JSON
    python fwi_camembert.py --outdir DIR   # where the figures go (default: this folder)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from sensitivity.pde.fwi import camembert

try:
    HERE = Path(__file__).resolve().parent
except NameError:  # sphinx-gallery runs the script without __file__, from its folder
    HERE = Path.cwd()
V_MIN, V_MAX = 2000.0, 3500.0  # velocity bounds (m/s)
MAX_UPDATE = 50.0  # largest velocity change of a gradient-descent step (m/s)


def build(quick):
    """The problem, true and starting models, and the observed data."""
    if quick:
        problem, v_true, v0 = camembert(shape=(51, 51), spacing=(20.0, 20.0), nbl=20,
                                        n_receivers=51)  # fmt: skip
    else:
        problem, v_true, v0 = camembert()
    d_obs = problem.modelled_data(v_true)
    return problem, v_true, v0, d_obs


def gradient_descent(problem, v0, d_obs, n_iter, log):
    """Steepest descent, step scaled so that max |dv| = MAX_UPDATE, clipped to bounds."""
    v = v0.copy()
    history, first_grad = [], None
    for k in range(n_iter + 1):
        f, g, _ = problem.misfit_gradient(v, d_obs)
        history.append(f)
        first_grad = g if first_grad is None else first_grad
        log(f"  gradient descent  it {k}: misfit {f:.6e} ({f / history[0]:.3f} of start)")
        if k == n_iter:
            break
        v = np.clip(v - MAX_UPDATE * g / np.abs(g).max(), V_MIN, V_MAX)
    return v, history, first_grad


def lbfgsb(problem, v0, d_obs, g0, n_iter, log):
    """L-BFGS-B on x = (v - v0) / kappa, with the same number of misfit evaluations.

    kappa = MAX_UPDATE ||g0|| / max|g0| makes L-BFGS-B's first trial step (unit
    length in x) the first gradient-descent step; later steps use its
    curvature pairs.
    """
    kappa = MAX_UPDATE * np.linalg.norm(g0) / np.abs(g0).max()
    evals = []

    def fun(x):
        f, g, _ = problem.misfit_gradient(v0 + kappa * x.reshape(v0.shape), d_obs)
        evals.append(f)
        return f, kappa * g.ravel()

    history = []

    def callback(xk):
        history.append(evals[-1])
        log(f"  L-BFGS-B          it {len(history)}: misfit {evals[-1]:.6e} "
            f"({evals[-1] / evals[0]:.3f} of start)")  # fmt: skip

    x0 = np.zeros(v0.size)
    bounds = [((V_MIN - v) / kappa, (V_MAX - v) / kappa) for v in v0.ravel()]
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, callback=callback,
                   options={"maxiter": n_iter, "maxfun": n_iter + 1})  # fmt: skip
    f_final, _, _ = problem.misfit_gradient(v0 + kappa * res.x.reshape(v0.shape), d_obs)
    return v0 + kappa * res.x.reshape(v0.shape), [evals[0]] + history, len(evals), f_final


def plot(outdir, problem, v_true, v0, v_gd, v_lb, g0, d_obs, hist_gd, hist_lb):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nx, nz = problem.shape
    hx, hz = problem.spacing
    ext = [0, (nx - 1) * hx, (nz - 1) * hz, 0]  # x right, depth z down
    src, rec = problem.sources, problem.receivers
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2), constrained_layout=True)
    for ax, v, title in zip(axes, [v_true, v0, v_gd, v_lb],
                            ["true", "starting", "gradient descent", "L-BFGS-B"]):  # fmt: skip
        im = ax.imshow(v.T, extent=ext, vmin=2450, vmax=3050, cmap="viridis")
        ax.plot(src[:, 0], src[:, 1], "r*", ms=8, label="sources")
        ax.plot(rec[::5, 0], rec[::5, 1], "wv", ms=3, label="receivers (every 5th)")
        ax.set(title=f"{title} model", xlabel="x (m)", ylabel="z (m)")
    axes[0].legend(loc="lower left", fontsize=7)
    fig.colorbar(im, ax=axes, label="velocity (m/s)", shrink=0.9)
    fig.savefig(outdir / "models.png", dpi=110)

    fig, ax = plt.subplots(figsize=(5.5, 4.5), constrained_layout=True)
    lim = np.abs(g0).max()
    im = ax.imshow(g0.T, extent=ext, cmap="seismic", vmin=-lim, vmax=lim)
    ax.set(title="first gradient dJ/dv", xlabel="x (m)", ylabel="z (m)")
    fig.colorbar(im, ax=ax, label="(s/m)")
    fig.savefig(outdir / "gradient.png", dpi=110)

    k = problem.n_shots // 2
    d0 = problem.modelled_data(v0)[k]
    t_end = (problem.nt - 1) * problem.dt
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5), constrained_layout=True, sharey=True)
    lim = np.abs(d_obs[k]).max() * 0.5
    for ax, d, title in zip(axes, [d_obs[k], d0, d_obs[k] - d0],
                            ["observed", "modelled (starting model)", "residual"]):  # fmt: skip
        ax.imshow(d, aspect="auto", cmap="gray", vmin=-lim, vmax=lim,
                  extent=[rec[0, 1], rec[-1, 1], t_end, 0])  # fmt: skip
        ax.set(title=f"shot {k}: {title}", xlabel="receiver depth z (m)")
    axes[0].set_ylabel("time (s)")
    fig.savefig(outdir / "shot_gather.png", dpi=110)

    fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
    ax.semilogy(np.array(hist_gd) / hist_gd[0], "o-", label="gradient descent")
    ax.semilogy(np.array(hist_lb) / hist_lb[0], "s-", label="L-BFGS-B")
    ax.axhline(0.25, color="gray", ls=":", label="target 0.25")
    ax.set(xlabel="iteration", ylabel="misfit / starting misfit", title="objective")
    ax.legend()
    fig.savefig(outdir / "objective.png", dpi=110)
    plt.close("all")
    return ["models.png", "gradient.png", "shot_gather.png", "objective.png"]


def main(argv=None):
    ap = argparse.ArgumentParser(description="FWI of the Camembert model")
    ap.add_argument("--quick", action="store_true", help="20 m grid (for the test suite)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--outdir", type=Path, default=HERE,
                    help="folder for the figures (default: this example's folder)")  # fmt: skip
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    problem, v_true, v0, d_obs = build(args.quick)
    nxc, nzc = problem.comp_shape
    print(f"Camembert FWI: {problem.shape[0]}x{problem.shape[1]} cells of "
          f"{problem.spacing[0]:g} m (+{problem.nbl}-cell sponge: {nxc}x{nzc}), "
          f"{problem.nt} steps of {1e3 * problem.dt:.3f} ms, {problem.n_shots} shots, "
          f"{len(problem.receivers)} receivers")  # fmt: skip
    v_gd, hist_gd, g0 = gradient_descent(problem, v0, d_obs, args.iterations, print)
    v_lb, hist_lb, n_evals, f_lb = lbfgsb(problem, v0, d_obs, g0, args.iterations, print)
    err = lambda v: float(np.linalg.norm(v - v_true) / np.linalg.norm(v0 - v_true))  # noqa: E731
    print(f"gradient descent: misfit x{hist_gd[-1] / hist_gd[0]:.3f}, model error "
          f"x{err(v_gd):.3f}; L-BFGS-B ({n_evals} evaluations): misfit "
          f"x{f_lb / hist_lb[0]:.3f}, model error x{err(v_lb):.3f}")  # fmt: skip
    figures = []
    if not args.no_plots:
        args.outdir.mkdir(parents=True, exist_ok=True)
        names = plot(args.outdir, problem, v_true, v0, v_gd, v_lb, g0, d_obs, hist_gd, hist_lb)
        figures = [str(args.outdir / f) for f in names]
        print("figures:", ", ".join(figures))
    summary = {
        "quick": args.quick,
        "gradient_descent": hist_gd,
        "lbfgsb": hist_lb,
        "lbfgsb_final": f_lb,
        "lbfgsb_evaluations": n_evals,
        "model_error_gd": err(v_gd),
        "model_error_lbfgsb": err(v_lb),
        "seconds": time.perf_counter() - t0,
        "figures": figures,
    }
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
