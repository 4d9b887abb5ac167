"""fit(): scipy.optimize driven by the toolkit's derivatives, with uncertainty.

``fit(objective, x0, method=...)`` runs ``least_squares`` on the objective's
residuals and residual Jacobian, or ``minimize`` on its value and gradient
(plus Hessian products for the Newton-type methods), in the optimiser's
variables x = T^-1(theta) of the objective's transform, and returns a
:class:`FitResult` in the user's parameters theta with

* covariance  C = s^2 (J^T J)^-1, J the residual Jacobian in theta at the
  estimate (all residual blocks, so regularisation acts as a prior), s^2 =
  ||r_data||^2 / (N_data - m) the residual variance (``absolute_sigma=True``
  drops s^2, for data weighted by their known variances);
* standard errors sqrt(diag C), the correlation matrix, t-distribution
  confidence intervals;
* the iteration history (objective, gradient norm, wall time) and
  :meth:`FitResult.summary`.

A tqdm progress bar shows the iterations on a terminal and stays silent
otherwise.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from scipy import optimize

# scipy.optimize.least_squares: "least_squares" picks "lm" or "trf" (fit's docstring)
LEAST_SQUARES = ("least_squares", "trf", "lm", "dogbox")
MINIMIZE = (
    "L-BFGS-B",
    "trust-constr",
    "Newton-CG",
    "BFGS",
    "CG",
    "TNC",
    "SLSQP",
    "trust-ncg",
    "trust-krylov",
    "trust-exact",
)
MAX_AUTO_COVARIANCE = 64  # above: no covariance unless fit(uncertainty=True)
HESSP_METHODS = ("trust-constr", "Newton-CG", "trust-ncg", "trust-krylov")
BOUNDED = ("least_squares", "trf", "dogbox", "L-BFGS-B", "trust-constr", "TNC", "SLSQP")


class FitResult(optimize.OptimizeResult):
    """A scipy ``OptimizeResult`` with the estimate's uncertainty.

    Attributes
    ----------
    x : ndarray, shape (m,)
        Estimate in the user's parameters theta.
    x_opt : ndarray, shape (m,)
        Estimate in the optimiser's variables.
    fun : float
        Objective at the estimate.
    covariance, correlation : ndarray, shape (m, m) or None
    stderr : ndarray, shape (m,) or None
    conf_int : ndarray, shape (m, 2) or None
        Confidence intervals at ``confidence``.
    rmse : float or None
        Root-mean-square data residual (weighted units).
    ssr : float or None
        Sum of squared data residuals (regularisation terms excluded).
    dof : int
        Degrees of freedom N_data - m.
    history : list of dict
        One entry per iteration: ``fun``, ``grad_norm``, ``time``.
    names : list of str
    """

    def summary(self):
        """Print and return a table of estimates, errors and correlations."""
        lines = [
            f"fit: {self.method}, {self.message}",
            f"objective {self.fun:.6g} after {len(self.history)} iterations, "
            f"{self.nfev} evaluations",
        ]
        if self.rmse is not None:
            lines.append(f"RMSE {self.rmse:.4g} (weighted), {self.dof} degrees of freedom")
        head = f"{'parameter':>12} {'estimate':>13} {'std. error':>12} {'rel.':>7}"
        pct = int(round(100 * self.confidence))
        head += f"  {pct}% confidence interval" if self.conf_int is not None else ""
        lines.append(head)
        for i, name in enumerate(self.names):
            row = f"{name:>12} {self.x[i]:>13.6g}"
            if self.stderr is not None:
                rel = abs(self.stderr[i] / self.x[i]) if self.x[i] else np.inf
                lo, hi = self.conf_int[i]
                row += f" {self.stderr[i]:>12.4g} {rel:>7.1%}  [{lo:.6g}, {hi:.6g}]"
            lines.append(row)
        if self.correlation is not None and len(self.names) > 1:
            lines.append("correlation:")
            for i, name in enumerate(self.names):
                vals = " ".join(f"{c:>6.3f}" for c in self.correlation[i, : i + 1])
                lines.append(f"{name:>12} {vals}")
        text = "\n".join(lines)
        print(text)
        return text


def fit(
    objective,
    x0,
    method="least_squares",
    bounds=None,
    progress=True,
    callback=None,
    names=None,
    confidence=0.95,
    absolute_sigma=False,
    uncertainty="auto",
    hessp=None,
    **options,
):
    """Fit an objective with scipy.optimize and estimate the uncertainty.

    Parameters
    ----------
    objective : AbstractObjective
        What to minimise (:class:`~sensitivity.inverse.objective.Objective`,
        sums, regularisation...).
    x0 : array_like, shape (m,)
        Starting point in the user's parameters theta.
    method : str
        ``"least_squares"``: ``scipy.optimize.least_squares`` on the residuals and
        their Jacobian, with Levenberg-Marquardt (MINPACK, ``"lm"``) when there are
        no bounds and at least as many residuals as unknowns, trust-region
        reflective (``"trf"``) otherwise. MINPACK's loop runs in compiled code (half
        the time of ``"trf"`` on a 4-parameter ODE fit) but cannot step back from a
        point where the model fails: a run that meets non-finite residuals restarts
        with ``"trf"``. ``"trf"``, ``"lm"`` or ``"dogbox"`` choose the algorithm;
        or a ``scipy.optimize.minimize`` method: ``"L-BFGS-B"``,
        ``"trust-constr"``, ``"Newton-CG"``, ``"BFGS"``, ...
    bounds : (lo, hi) of arrays or floats, optional
        Bounds on theta (monotone transforms carry them to x).
    progress : bool
        Show a progress bar when standard error is a terminal.
    callback : callable, optional
        ``callback(theta, fun)`` after every iteration.
    names : list of str, optional
        Parameter names for the summary.
    confidence : float
        Level of the confidence intervals.
    absolute_sigma : bool
        Do not scale the covariance by the residual variance.
    uncertainty : {"auto", True, False}
        Compute the covariance, standard errors and confidence intervals (they need
        the residual Jacobian at the estimate). ``"auto"``: for objectives with
        residuals and at most :data:`MAX_AUTO_COVARIANCE` parameters; a field of
        thousands of unknowns gets no dense covariance unless asked for. The RMSE
        is reported whenever the objective has residuals.
    hessp : {None, "gauss-newton", "exact"}
        The Hessian products of the Newton-type ``minimize`` methods (``"trust-ncg"``,
        ``"Newton-CG"``, ``"trust-krylov"``, ``"trust-constr"``): ``"exact"`` second
        derivatives (for ODE objectives, second-order forward sensitivities: one
        augmented solve per product) or the Gauss-Newton ``J^T J v`` of residual
        objectives. None: Gauss-Newton where the objective has residuals, exact
        otherwise.
    **options
        Passed to ``least_squares`` (e.g. ``xtol``) or as ``minimize``
        options (e.g. ``maxiter``).

    Returns
    -------
    FitResult
    """
    if uncertainty not in ("auto", True, False):
        raise ValueError(f"uncertainty must be 'auto', True or False, got {uncertainty!r}")
    m = objective.n_params
    theta0 = np.asarray(x0, dtype=np.float64)
    if theta0.shape != (m,) or not np.all(np.isfinite(theta0)):
        raise ValueError(f"x0 must be {m} finite numbers, got {x0!r}")
    if method not in LEAST_SQUARES + MINIMIZE:
        raise ValueError(f"method must be one of {LEAST_SQUARES + MINIMIZE}, got {method!r}")
    if hessp not in (None, "gauss-newton", "exact"):
        raise ValueError(f"hessp must be None, 'gauss-newton' or 'exact', got {hessp!r}")
    lo, hi = _bounds(bounds, m, theta0, method)
    z0 = objective.to_x(theta0)
    zlo, zhi = _bounds_to_x(objective, lo, hi)
    names = [f"p{i}" for i in range(m)] if names is None else list(names)
    if len(names) != m:
        raise ValueError(f"names must hold {m} names, got {len(names)}")
    tracker = _Tracker(objective, progress, callback)
    try:
        if method in LEAST_SQUARES:
            raw = _run_least_squares(objective, z0, zlo, zhi, method, tracker, options)
        else:
            raw = _run_minimize(objective, z0, zlo, zhi, method, tracker, hessp, options)
    finally:
        tracker.close()
    if uncertainty == "auto":
        uncertainty = m <= MAX_AUTO_COVARIANCE
    res = _result(objective, raw, method, names, confidence, tracker.history)
    if objective.has_residuals:
        _misfit_stats(res, objective)
        if uncertainty:
            _uncertainty(res, objective, absolute_sigma)
    return res


def _bounds(bounds, m, theta0, method):
    if bounds is None:
        return np.full(m, -np.inf), np.full(m, np.inf)
    if method not in BOUNDED:
        raise ValueError(f"method {method!r} does not take bounds; use one of {BOUNDED}")
    lo, hi = (np.broadcast_to(np.asarray(b, dtype=np.float64), (m,)) for b in bounds)
    if np.any(lo >= hi):
        raise ValueError(f"bounds: need lo < hi, got lo={lo}, hi={hi}")
    out = (theta0 < lo) | (theta0 > hi)
    if out.any():
        i = int(np.argmax(out))
        raise ValueError(f"x0[{i}] = {theta0[i]} lies outside bounds [{lo[i]}, {hi[i]}]")
    return lo, hi


def _bounds_to_x(objective, lo, hi):
    zlo, zhi = lo.copy(), hi.copy()
    for i, t in enumerate(objective.transform.transforms):
        for arr, val in ((zlo, lo[i]), (zhi, hi[i])):
            if np.isfinite(val):
                try:
                    arr[i] = t.inverse(np.array(val))
                except ValueError:  # a bound outside the transform's range: no bound
                    arr[i] = -np.inf if arr is zlo else np.inf
    return zlo, zhi


class _Tracker:
    """History, progress bar and user callback, one call per iteration."""

    def __init__(self, objective, progress, callback):
        self.objective, self.callback = objective, callback
        self.history, self.t0 = [], time.perf_counter()
        self.bar = None
        if progress and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(desc="fit", unit="it", leave=False)
            except ImportError:
                pass

    def __call__(self, z):
        value, grad = self.objective.fun_and_jac(z)  # cached: no new solve
        gnorm = float(np.linalg.norm(grad))
        self.history.append(
            {"fun": value, "grad_norm": gnorm, "time": time.perf_counter() - self.t0}
        )
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(fun=f"{value:.4g}", grad=f"{gnorm:.2g}")
        if self.callback is not None:
            self.callback(self.objective.to_theta(z), value)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _NonFinite(Exception):
    """Non-finite residuals inside MINPACK's Levenberg-Marquardt loop."""


def _run_least_squares(objective, z0, zlo, zhi, method, tracker, options):
    algo = method
    if method == "least_squares":
        unbounded = not (np.isfinite(zlo).any() or np.isfinite(zhi).any())
        # the residuals at z0 are cached by the objective: least_squares asks for them first
        algo = "lm" if unbounded and objective.residuals(z0).size >= z0.size else "trf"

    def jac(z):
        J = objective.residual_jac(z)
        tracker(z)  # trf and MINPACK evaluate the Jacobian once per accepted iteration
        return J

    def fun(z):
        r = objective.residuals(z)
        if algo == "lm" and method == "least_squares" and not np.all(np.isfinite(r)):
            raise _NonFinite
        return r

    bounds = {} if algo == "lm" else {"bounds": (zlo, zhi)}
    try:
        return optimize.least_squares(fun, z0, jac=jac, method=algo, **bounds, **options)
    except _NonFinite:  # the model failed at a trial point: trf steps back from those
        algo = "trf"
        tracker.history.clear()
        return optimize.least_squares(
            objective.residuals, z0, jac=jac, bounds=(zlo, zhi), method="trf", **options
        )


def _run_minimize(objective, z0, zlo, zhi, method, tracker, hessp, options):
    tracker(z0)

    def cb(intermediate_result):
        tracker(intermediate_result.x)

    kwargs = {}
    if method in HESSP_METHODS:
        if hessp is None:
            hessp = "gauss-newton" if objective.has_residuals else "exact"
        kwargs["hessp"] = lambda z, v: objective.hessp(z, v, kind=hessp)
    if method in BOUNDED and (np.isfinite(zlo).any() or np.isfinite(zhi).any()):
        kwargs["bounds"] = optimize.Bounds(zlo, zhi)
    return optimize.minimize(
        objective.fun_and_jac, z0, jac=True, method=method, callback=cb, options=options, **kwargs
    )


def _result(objective, raw, method, names, confidence, history):
    z = np.asarray(raw.x, dtype=np.float64)
    theta = objective.to_theta(z)
    res = FitResult(
        x=theta,
        x_opt=z,
        fun=objective.fun(z),
        success=bool(raw.success),
        status=raw.status,
        message=str(raw.message),
        method=method,
        nfev=int(getattr(raw, "nfev", 0)),
        njev=int(getattr(raw, "njev", 0) or 0),
        nit=int(getattr(raw, "nit", len(history)) or len(history)),
        names=names,
        confidence=confidence,
        history=history,
        covariance=None,
        stderr=None,
        correlation=None,
        conf_int=None,
        rmse=None,
        ssr=None,
        dof=0,
    )
    return res


def _misfit_stats(res, objective):
    """Degrees of freedom, RMSE and data sum of squares (no derivatives needed)."""
    theta = res.x
    ev = objective.evaluate(theta, {"residuals"})
    n_data = objective.n_data or ev.residuals.size
    res.ssr = _data_ssr(objective, theta, ev)
    res.dof = max(n_data - theta.size, 0)
    res.rmse = float(np.sqrt(res.ssr / max(n_data, 1)))


def _uncertainty(res, objective, absolute_sigma):
    theta = res.x
    ev = objective.evaluate(theta, {"residuals", "rjac"})
    J = ev.rjac
    if not isinstance(J, np.ndarray):
        J = J @ np.eye(J.shape[1])  # a LinearOperator: m products give the dense J
    dof, ssr = res.dof, res.ssr
    s2 = 1.0 if absolute_sigma else (ssr / dof if dof else np.nan)
    N = J.T @ J
    try:
        cov = np.linalg.inv(N) * s2
    except np.linalg.LinAlgError:
        warnings.warn(
            "the normal matrix J^T J is singular: parameters are not all "
            "identifiable; the covariance uses a pseudo-inverse",
            stacklevel=3,
        )
        cov = np.linalg.pinv(N) * s2
    stderr = np.sqrt(np.abs(np.diag(cov)))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(stderr, stderr)
    from scipy import stats  # 0.2 s to import: only when a covariance is computed

    q = stats.t.ppf(0.5 + res.confidence / 2, dof) if dof else np.nan
    res.covariance, res.stderr, res.correlation = cov, stderr, corr
    res.conf_int = np.column_stack([theta - q * stderr, theta + q * stderr])


def _data_ssr(objective, theta, ev):
    """Sum of squared *data* residuals (regularisation terms have n_data = 0)."""
    parts = getattr(objective, "parts", None)
    if parts is None:
        return float(ev.residuals @ ev.residuals)
    return float(sum(2.0 * p.evaluate(theta, {"value"}).value for p in parts if p.n_data))
