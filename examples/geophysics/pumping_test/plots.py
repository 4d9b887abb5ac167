"""Figures of the pumping-test example (matplotlib, Agg backend, PNG files).

* ``drawdown.png``: drawdown vs log time per piezometer, data and fitted
  PDE model, with the analytic solution at the same parameters;
* ``derivative.png``: the diagnostic plot ds/d ln t (log-log), data (Bourdet
  derivative) and model (t ds/dt from the right-hand side);
* ``misfit_contours.png``: the misfit over (log T, log S) with the 1- and
  2-sigma ellipses of the estimated covariance;
* ``residuals.png``: data minus model vs log time.
"""

from __future__ import annotations

import analytic
import numpy as np

CONTOUR_POINTS = 17  # misfit evaluations per axis (each one PDE solve)
CONTOUR_SIGMAS = 3.5  # half-width of the contour window in marginal standard errors
COLORS = ("C0", "C1", "C2", "C3")


def all_figures(fits, outdir, log=print):
    """Draw every figure into ``outdir``; return the file names.

    Parameters
    ----------
    fits : dict
        Test name -> ``(test, model, objective, result)`` from ``fit_test``.
    outdir : pathlib.Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    curves = {name: _curves(*fit[:2], fit[3].x) for name, fit in fits.items()}
    names = []
    for draw in (_drawdown, _derivative, _residuals):
        fig, axes = plt.subplots(1, len(fits), figsize=(6 * len(fits), 4.5),
                                 constrained_layout=True)  # fmt: skip
        for ax, (name, fit) in zip(np.atleast_1d(axes), fits.items()):
            fname = draw(ax, fit, curves[name])
            lo, hi = ax.get_xlim()  # short axes (Dalem) also get 0.02, 0.05, 0.2 ... labels
            short = hi / lo < 100.0
            ax.xaxis.set_minor_formatter(FuncFormatter(_minor_label) if short else NullFormatter())
        fig.savefig(outdir / fname, dpi=110)
        names.append(fname)
    log("misfit contours: "
        f"{len(fits) * CONTOUR_POINTS**2} PDE solves ...")  # fmt: skip
    fig, axes = plt.subplots(1, len(fits), figsize=(6 * len(fits), 5), constrained_layout=True)
    for ax, fit in zip(np.atleast_1d(axes), fits.values()):
        _contours(ax, *fit)
    fig.savefig(outdir / "misfit_contours.png", dpi=110)
    names.append("misfit_contours.png")
    plt.close("all")
    return names


def _minor_label(x, pos):
    """Label minor log ticks at 2 and 5 times a power of ten."""
    mantissa = x / 10.0 ** np.floor(np.log10(x))
    return f"{x:g}" if round(mantissa) in (2, 5) else ""


def _curves(test, model, p):
    """Model drawdown and its rate on a log-spaced time axis, per piezometer."""
    t_min = min(float(t[0]) for t in test.t)
    tt = np.geomspace(t_min / 2.0, test.t_end, 150)
    s, dsdt = model.drawdowns(p, test.r, tt, rate=True)
    return tt, s, dsdt


def _title(test, p):
    est = f"T = {p[0]:.0f} m²/d, S = {p[1]:.2e}"
    if test.leaky:
        est += f", c = {p[2]:.0f} d"
    return f"{test.name.replace('_', ' ').title()}: {est}"


def _drawdown(ax, fit, curves):
    test, _, _, result = fit
    tt, s, _ = curves
    for k, (r, t, d) in enumerate(zip(test.r, test.t, test.s)):
        col = COLORS[k % len(COLORS)]
        ax.semilogx(t, d, "o", color=col, ms=4, label=f"r = {r:g} m")
        ax.semilogx(tt, s[k], "-", color=col)
        ax.semilogx(tt, analytic.drawdown(r, tt, result.x, test.Q), "k:", lw=1)
    ax.plot([], [], "k-", label="PDE model (fit)")
    ax.plot([], [], "k:", label="Hantush" if test.leaky else "Theis")
    ax.set(xlabel="time since pumping started (d)", ylabel="drawdown s (m)",
           title=_title(test, result.x))  # fmt: skip
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    return "drawdown.png"


def bourdet(t, s, L=0.2):
    """Bourdet derivative ds/d ln t of data, differencing over at least ``L`` in ln t.

    Returns the times of the interior points that have neighbours L away on
    both sides and the derivative there.
    """
    x = np.log(t)
    out_t, out_d = [], []
    for i in range(x.size):
        left = np.flatnonzero(x <= x[i] - L)
        right = np.flatnonzero(x >= x[i] + L)
        if left.size == 0 or right.size == 0:
            continue
        j, k = left[-1], right[0]
        d1, d2 = x[i] - x[j], x[k] - x[i]
        slope_l, slope_r = (s[i] - s[j]) / d1, (s[k] - s[i]) / d2
        out_t.append(t[i])
        out_d.append((slope_l * d2 + slope_r * d1) / (d1 + d2))
    return np.array(out_t), np.array(out_d)


def _derivative(ax, fit, curves):
    test, _, _, result = fit
    tt, _, dsdt = curves
    for k, (r, t, d) in enumerate(zip(test.r, test.t, test.s)):
        col = COLORS[k % len(COLORS)]
        tb, db = bourdet(t, d)
        keep = db > 0
        ax.loglog(tb[keep], db[keep], "o", color=col, ms=4, label=f"r = {r:g} m (data)")
        ax.loglog(tt, tt * dsdt[k], "-", color=col)
    slope = test.Q / (4.0 * np.pi * result.x[0])
    ax.axhline(slope, color="gray", ls="--", lw=1, label="Q / (4 π T)")
    ax.plot([], [], "k-", label="model: t ds/dt from the RHS")
    ax.set(xlabel="time since pumping started (d)", ylabel="ds / d ln t (m)",
           title=_title(test, result.x), ylim=(slope / 30.0, slope * 3.0))  # fmt: skip
    ax.legend(fontsize=8)
    return "derivative.png"


def _residuals(ax, fit, curves):
    test, model, _, result = fit
    rmse = result.rmse
    fitted = model.readings(result.x, test.r, test.t)
    for k, (r, t, d) in enumerate(zip(test.r, test.t, test.s)):
        ax.semilogx(t, 1e3 * (d - fitted[k]), "o-", color=COLORS[k % len(COLORS)], ms=4,
                    lw=0.6, label=f"r = {r:g} m")  # fmt: skip
    for sign in (-1, 1):
        ax.axhline(sign * 1e3 * rmse, color="gray", ls="--", lw=1)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set(xlabel="time since pumping started (d)", ylabel="data − model (mm)",
           title=f"{test.name.replace('_', ' ').title()}: residuals, RMSE "
                 f"{1e3 * rmse:.1f} mm (dashed)")  # fmt: skip
    ax.legend(fontsize=8)
    return "residuals.png"


def _ssr(test, model, p):
    fitted = model.readings(p, test.r, test.t, rtol=1e-6, atol=1e-8)
    return sum(float(np.sum((d - f) ** 2)) for d, f in zip(test.s, fitted))


def _contours(ax, test, model, objective, result):
    """Misfit over (log10 T, log10 S), c held at its estimate, and the covariance ellipses."""
    p = result.x
    ln10 = np.log(10.0)
    C = result.covariance / np.outer(p, p) / ln10**2  # covariance of log10 theta
    centre = np.log10(p[:2])
    half = CONTOUR_SIGMAS * np.sqrt(np.diag(C)[:2])
    lt = np.linspace(centre[0] - half[0], centre[0] + half[0], CONTOUR_POINTS)
    ls = np.linspace(centre[1] - half[1], centre[1] + half[1], CONTOUR_POINTS)
    F = np.empty((ls.size, lt.size))
    for i, b in enumerate(ls):
        for j, a in enumerate(lt):
            q = p.copy()
            q[:2] = 10.0**a, 10.0**b
            F[i, j] = _ssr(test, model, q)
    ssr_min = result.rmse**2 * test.n_data
    s2 = ssr_min / result.dof  # the residual variance behind the covariance
    cs = ax.contourf(lt, ls, np.log10(F), levels=20, cmap="viridis_r")
    ax.figure.colorbar(cs, ax=ax, label="log10 sum of squared residuals (m²)")
    ax.contour(lt, ls, F, levels=[ssr_min + s2, ssr_min + 4 * s2], colors="w",
               linestyles="--", linewidths=1)  # fmt: skip
    angle = np.linspace(0.0, 2.0 * np.pi, 200)
    L = np.linalg.cholesky(C[:2, :2])
    for k, style in ((1, "-"), (2, "--")):
        e = centre[:, None] + k * L @ np.vstack([np.cos(angle), np.sin(angle)])
        ax.plot(e[0], e[1], "r" + style, lw=1.5, label=f"{k}σ covariance ellipse")
    ax.plot(*centre, "r+", ms=10, mew=2)
    ax.plot([], [], "w--", label="misfit = min + (1, 4) s²")
    title = f"{test.name.replace('_', ' ').title()}: corr(T, S) = {result.correlation[0, 1]:+.2f}"
    if test.leaky:
        title += f"\n(slice at c = {p[2]:.0f} d; ellipses: marginal over c)"
    ax.set(xlabel="log10 T (m²/d)", ylabel="log10 S", title=title)
    ax.legend(fontsize=8, loc="upper right", facecolor="0.85")
