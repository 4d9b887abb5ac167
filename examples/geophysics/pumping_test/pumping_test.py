"""Aquifer parameters from two classic pumping tests
=================================================

Transmissivity, storativity and leakage by a PDE model and forward sensitivities.

Two tests from Kruseman & de Ridder (1994), drawdown recorded in piezometers
around a well pumping at a constant rate:

* **Oude Korendijk** (confined aquifer, Q = 788 m^3/d, piezometers at 30 and
  90 m): T and S;
* **Dalem** (leaky aquifer under an aquitard, Q = 761 m^3/d, piezometers at
  30, 60, 90 and 120 m): T, S and the aquitard's resistance c.

The model is the radial flow equation solved on a log-spaced grid by the
toolkit's BDF method (:mod:`radial_flow`: the right-hand side is ordinary
numba-style Python). ``scipy.optimize.least_squares`` fits log T, log S (and
log c) with the residual Jacobian from forward sensitivities: dual numbers
through that right-hand side and the staggered BDF corrector. The example
checks its PDE against the analytic Theis and Hantush solutions
(:mod:`analytic`) and reports estimates, standard errors, the T-S correlation
and the RMSE.

Usage::

    python pumping_test.py             # fits, checks, grid convergence, figures
    python pumping_test.py --quick     # fits and the analytic check only (the test suite)
    python pumping_test.py --json      # last line: estimates, errors, RMSE as JSON
    python pumping_test.py --outdir DIR   # where the figures go (default: this folder)

Units: r in m, t in days, T in m^2/d, S dimensionless, c in days, Q in m^3/d.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import optimize, special

try:
    HERE = Path(__file__).resolve().parent
except NameError:  # sphinx-gallery runs the script without __file__, from its folder
    HERE = Path.cwd()
sys.path.insert(0, str(HERE))  # the example's own modules, also when imported from elsewhere

import analytic  # noqa: E402
import radial_flow  # noqa: E402

import sensitivity as sn  # noqa: E402

RTOL, ATOL = 1e-6, 1e-8  # tolerances of the fitted solves: ~1e-6 m << the data's 1e-3 m
CHECK_TOL = 1e-3  # m: the PDE must match the analytic solutions to this
NAMES = ("T", "S", "c")
UNITS = {"T": "m2/d", "S": "-", "c": "d"}


@dataclass(frozen=True)
class PumpingTest:
    """One pumping test: rate, and per piezometer its distance, times and drawdowns.

    Attributes
    ----------
    name : str
    Q : float
        Pumping rate (m^3/d).
    leaky : bool
        Fit the aquitard resistance c too.
    r : tuple of float
        Piezometer distances (m), one per piezometer.
    t, s : tuple of ndarray
        Times (d) and drawdowns (m) per piezometer, sorted in time.
    """

    name: str
    Q: float
    leaky: bool
    r: tuple
    t: tuple
    s: tuple

    @property
    def t_end(self):
        return max(float(t[-1]) for t in self.t)

    @property
    def n_data(self):
        return sum(s.size for s in self.s)

    @property
    def names(self):
        return list(NAMES[: 3 if self.leaky else 2])


TESTS = {  # name: (CSV file, pumping rate Q (m3/d), time column, its unit in days, leaky?)
    "oude_korendijk": ("pumping_test_oude_korendijk.csv", 788.0, "t_min", 1 / 1440, False),
    "dalem": ("pumping_test_dalem.csv", 761.0, "t_day", 1.0, True),
}


def load(name):
    """Read a test's CSV (comment lines, then a header) into a :class:`PumpingTest`."""
    fname, Q, t_col, day, leaky = TESTS[name]
    with open(HERE / fname) as fh:
        rows = [line for line in fh if not line.startswith("#")]
    data = np.genfromtxt(rows, delimiter=",", names=True)
    r_all, t_all, s_all = data["r_m"], data[t_col] * day, data["s_m"]
    radii = tuple(float(r) for r in np.unique(r_all))
    ts, ss = [], []
    for r in radii:
        sel = r_all == r
        order = np.argsort(t_all[sel], kind="stable")
        ts.append(t_all[sel][order])
        ss.append(s_all[sel][order])
    return PumpingTest(name, Q, leaky, radii, tuple(ts), tuple(ss))


def starting_values(test):
    """Start of the fit, from the data by the graphical methods of the field.

    Cooper-Jacob: late drawdowns at the nearest piezometer follow
    ``s = Q/(4 pi T) ln(2.25 T t / (r^2 S))``, so a straight line in ln t gives
    T from its slope and S from its zero crossing. For a leaky aquifer the
    steady drawdown ``Q/(2 pi T) K0(r / sqrt(T c))`` (de Glee), matched to the
    last reading of the farthest piezometer, gives c.
    """
    t, s, r = test.t[0], test.s[0], test.r[0]
    late = slice(t.size // 2, None)
    slope, intercept = np.polyfit(np.log(t[late]), s[late], 1)
    T = test.Q / (4.0 * np.pi * slope)
    S = 2.25 * T * np.exp(-intercept / slope) / r**2
    if not test.leaky:
        return np.array([T, S])
    r_far, s_far = test.r[-1], test.s[-1][-1]
    target = 2.0 * np.pi * T * s_far / test.Q  # K0(r / B) = target
    x = optimize.brentq(lambda x: special.k0(x) - target, 1e-6, 50.0)
    return np.array([T, S, (r_far / x) ** 2 / T])


def build_objective(test, model, rtol=RTOL, atol=ATOL):
    """The least-squares objective of one test: the drawdown misfit at every piezometer.

    One ``L2Misfit`` per piezometer (each with its own times) observes the
    model at that radius; the sum is one experiment, fitted in log space.
    """
    terms = [
        sn.L2Misfit(t, s, observe=model.observer(r)) for r, t, s in zip(test.r, test.t, test.s)
    ]
    term = sum(terms[1:], terms[0])
    obj = sn.Objective(model.problem, term, method="BDF", rtol=rtol, atol=atol, name=test.name)
    return obj.with_transform(sn.Log())


def fit_test(test, cells_per_decade=radial_flow.CELLS_PER_DECADE):
    """Fit the PDE model to one test; return (model, objective, FitResult)."""
    p0 = starting_values(test)
    grid = radial_flow.radial_grid(cells_per_decade)
    model = radial_flow.RadialFlowModel(test.Q, test.t_end, p0, grid)
    objective = build_objective(test, model)
    result = sn.fit(objective, p0, names=test.names, progress=False)
    if not result.success:
        raise RuntimeError(f"{test.name}: the fit failed: {result.message}")
    return model, objective, result


def analytic_check(test, model, p):
    """Largest |PDE - analytic| drawdown (m) over the piezometers' observation times."""
    pde = model.readings(p, test.r, test.t)
    return max(
        float(np.max(np.abs(s - analytic.drawdown(r, t, p, test.Q))))
        for r, t, s in zip(test.r, test.t, pde)
    )


def grid_convergence(test, p, levels=(10, 20, 40)):
    """The analytic check on grids of 10, 20 and 40 cells per decade of r."""
    errors = []
    for k in levels:
        model = radial_flow.RadialFlowModel(test.Q, test.t_end, p, radial_flow.radial_grid(k))
        errors.append(analytic_check(test, model, p))
    return list(levels), errors


def summarise(test, objective, result, check):
    """The JSON-ready record of one fit (T in m^2/d, c in d)."""
    return {
        "estimates": dict(zip(test.names, map(float, result.x))),
        "stderr": dict(zip(test.names, map(float, result.stderr))),
        "correlation_T_S": float(result.correlation[0, 1]),
        "rmse_m": float(result.rmse),
        "n_data": test.n_data,
        "iterations": len(result.history),
        "sensitivity_solves": objective.nsolves,
        "max_error_vs_analytic_m": check,
    }


def report(test, objective, result, check, log):
    """Print a test's estimates the way a hydrogeologist reads them."""
    kind = "leaky, Hantush" if test.leaky else "confined, Theis"
    radii = ", ".join(f"{r:g}" for r in test.r)
    log(f"\n{test.name}: Q = {test.Q:g} m3/d, piezometers at {radii} m, "
        f"{test.n_data} readings ({kind})")  # fmt: skip
    for name, x, e in zip(test.names, result.x, result.stderr):
        log(f"  {name} = {x:.5g} +- {e:.2g} {UNITS[name]}  ({e / x:.1%})")
    log(f"  corr(T, S) = {result.correlation[0, 1]:+.3f}; RMSE {1e3 * result.rmse:.2f} mm; "
        f"{len(result.history)} iterations, "
        f"{objective.nsolves} solves with sensitivities")  # fmt: skip
    ok = "ok" if check < CHECK_TOL else "FAILED"
    log(f"  PDE vs analytic at the fitted parameters: max |ds| = {check:.2e} m "
        f"(limit {CHECK_TOL:g} m: {ok})")  # fmt: skip


def main(argv=None):
    ap = argparse.ArgumentParser(description="Pumping tests: T, S (and c) from drawdown data")
    ap.add_argument("--quick", action="store_true", help="fits and checks only (test suite)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    ap.add_argument("--outdir", type=Path, default=HERE,
                    help="folder for the figures (default: this example's folder)")  # fmt: skip
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)
    log = print
    t_start = time.perf_counter()
    summary = {"quick": args.quick}
    fits = {}
    for name in TESTS:
        test = load(name)
        model, objective, result = fit_test(test)
        check = analytic_check(test, model, result.x)
        report(test, objective, result, check, log)
        summary[name] = summarise(test, objective, result, check)
        fits[name] = (test, model, objective, result)
        if not args.quick:
            levels, errors = grid_convergence(test, result.x)
            rates = [np.log2(a / b) for a, b in zip(errors[:-1], errors[1:])]
            log("  grid convergence: " + ", ".join(
                f"{k} cells/decade {e:.1e} m" for k, e in zip(levels, errors))
                + " (order " + ", ".join(f"{q:.2f}" for q in rates) + ")")  # fmt: skip
            summary[name]["grid_convergence"] = {"cells_per_decade": levels, "max_error_m": errors}
    figures = []
    if not (args.quick or args.no_plots):
        import plots

        args.outdir.mkdir(parents=True, exist_ok=True)
        figures = [str(args.outdir / f) for f in plots.all_figures(fits, args.outdir, log)]
        log("figures: " + ", ".join(figures))
    summary["figures"] = figures
    summary["seconds"] = time.perf_counter() - t_start
    summary["checks_passed"] = all(summary[name]["max_error_vs_analytic_m"] < CHECK_TOL
                                   for name in TESTS)  # fmt: skip
    log(f"done in {summary['seconds']:.1f} s")
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    if not main()["checks_passed"]:  # no sys.exit on success: sphinx-gallery runs this too
        sys.exit(1)
