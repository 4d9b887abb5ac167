"""solve(): the driver, the METHODS dict and the Solution.

``solve(prob, method, t_eval, rtol, atol, ...)`` validates its arguments once (DESIGN.md
section 6), hands arrays to one compiled kernel that runs the whole step loop together with
the user's right-hand side, and wraps the kernel's trace into a :class:`Solution`.

A failed integration (step size underflow, max_steps, a non-finite right-hand side, Newton
failure) returns ``success=False`` with a message naming the cause and the time; the arrays
then hold the part that was computed, never a silently truncated answer.

:class:`Solver` is the same driver split in two (validate once, run many times with new
``p``/``y0``); :func:`warmup` compiles every kernel into numba's disk cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from numba.core.dispatcher import Dispatcher

from sensitivity.ode import aot, bdf, esdirk, explicit, linsolve, rosenbrock
from sensitivity.ode.control import (
    EPS,
    JAC_SIG,
    MAX_STEPS,
    NEWTON_FAILED,
    NONFINITE,
    RHS_SIG,
    STEP_TOO_SMALL,
    SUCCESS,
    TERMINATED,
    addresses,
    jit,
    python_twin,
    sorted_along,
)
from sensitivity.ode.events import STATS, no_events, unpack_extra
from sensitivity.ode.tableaus import DP5, DP8, TSIT5, ButcherTableau


@dataclass(frozen=True)
class Events:
    """Event functions ``g(t, y, p, out)`` filling ``out`` (n,), their directions and flags.

    Parameters
    ----------
    g : callable
        In place, numba-compilable (like the right-hand side); event ``k`` fires where
        ``out[k]`` crosses zero.
    n : int
        Number of event functions.
    direction : float or sequence of n floats
        > 0: only crossings from negative to positive; < 0: positive to negative; 0: both.
    terminal : bool or sequence of n bools
        A terminal event ends the integration at its time (``status = 1``).
    """

    g: Callable
    n: int = 1
    direction: object = 0.0
    terminal: object = False

    def __post_init__(self):
        if not callable(self.g):
            raise TypeError(f"events.g must be callable, got {type(self.g).__name__}")
        if not (isinstance(self.n, (int, np.integer)) and self.n >= 1):
            raise ValueError(f"events.n must be a positive integer, got {self.n!r}")
        d = np.broadcast_to(np.sign(np.asarray(self.direction, float)), (self.n,))
        term = np.broadcast_to(np.asarray(self.terminal, bool), (self.n,))
        object.__setattr__(self, "direction", d.astype(np.int64))
        object.__setattr__(self, "terminal", term.astype(np.int64))


@dataclass
class Solution:
    """Result of :func:`solve` (scipy's ``OdeResult`` names).

    Attributes
    ----------
    t : ndarray, shape (nt,)
    y : ndarray, shape (nt, n)
    success : bool
    status : int
        0: reached the end of ``t_span``; 1: a terminal event; < 0: failure.
    message : str
    stats : dict
        ``nfev, njev, nlu, nsteps, nreject``.
    t_events, y_events : list of ndarray
        Per event function, the times (k,) and states (k, n) of its crossings.
    segments : tuple or None
        Dense output ``(t_bounds, h, y_anchor, Q, anchor_at_end)`` when ``dense=True``: step
        i covers [t_bounds[i], t_bounds[i+1]] (shapes (N+1,), (N,), (N, n), (N, n, q)) and
        ``y(t) = y_anchor[i] + sum_j Q[i, :, j] s**(j+1)``, ``s = (t - anchor) / h[i]`` with
        the anchor ``t_bounds[i+1]`` if ``anchor_at_end`` (BDF) else ``t_bounds[i]``. The
        forward-sensitivity and adjoint solvers read the step sequence from here.
    """

    t: np.ndarray
    y: np.ndarray
    success: bool
    status: int
    message: str
    stats: dict
    t_events: list = field(default_factory=list)
    y_events: list = field(default_factory=list)
    segments: tuple | None = None

    def __call__(self, t):
        """Return y at ``t`` (scalar -> (n,), array (k,) -> (k, n)) from the dense output."""
        if self.segments is None:
            raise ValueError("the Solution is callable only with dense=True in solve()")
        tb, h, ya, Q, at_end = self.segments
        ts = np.atleast_1d(np.asarray(t, dtype=float))
        lo, hi = min(tb[0], tb[-1]), max(tb[0], tb[-1])
        if np.any((ts < lo) | (ts > hi)):
            raise ValueError(f"t must lie in the solved interval [{lo}, {hi}]")
        if tb[-1] >= tb[0]:
            i = np.searchsorted(tb, ts, side="left") - 1
        else:
            i = np.searchsorted(-tb, -ts, side="left") - 1
        i = np.clip(i, 0, len(h) - 1)
        anchor = tb[i + 1] if at_end else tb[i]
        s = (ts - anchor) / h[i]
        powers = s[:, None] ** np.arange(1, Q.shape[2] + 1)  # (k, q)
        out = ya[i] + np.einsum("knq,kq->kn", Q[i], powers)
        return out[0] if np.ndim(t) == 0 else out


# --- the methods -------------------------------------------------------------------


_ARRAYS = {}


def _no_events_addresses():
    """The addresses of :func:`sensitivity.ode.events.no_events` (made once)."""
    if "no_events" not in _ARRAYS:
        _ARRAYS["no_events"] = np.array(addresses(no_events, RHS_SIG), dtype=np.int64)
    return _ARRAYS["no_events"]


_OPTS = {}  # the explicit kernel's full opts, by (method, the solve's opts)


@dataclass(frozen=True)
class ExplicitRK:
    """An explicit Runge-Kutta method: its tableau and the kernel arrays."""

    tableau: ButcherTableau
    stiff: bool = False
    anchor_at_end: bool = False

    @property
    def flags(self):
        """Kernel options ``[err_order, fsal, reuse_dense_stage, combined_error]`` (cached)."""
        key = (self.tableau.name, "flags")
        if key not in _ARRAYS:
            t = self.tableau
            _ARRAYS[key] = np.array(
                [t.err_order, t.fsal, t.reuse_dense_stage, np.any(t.e3 != 0.0)], float
            )
        return _ARRAYS[key]

    @property
    def kernel(self):
        """The method's integrator, :func:`sensitivity.ode.explicit.rk_kernel` (made once)."""
        key = (self.tableau.name, "kernel")
        if key not in _ARRAYS:
            _ARRAYS[key] = explicit.rk_kernel(*self.arrays)
        return _ARRAYS[key]

    @property
    def arrays(self):
        """Writable copies of (a, b, c, e, e3, P) for the kernel (made once)."""
        if self.tableau.name not in _ARRAYS:
            t = self.tableau
            _ARRAYS[t.name] = tuple(np.array(x) for x in (t.a, t.b, t.c, t.e, t.e3, t.P))
        return _ARRAYS[self.tableau.name]

    def run(self, fns, compiled, t_span, y0, p, tol, opts, t_eval, ev):
        """Run the compiled kernel or its Python twin; ``fns = (functions, g)`` as
        :func:`_functions` returns them."""
        key = (self.tableau.name, opts.tobytes())  # a Solver passes the same opts every time
        full = _OPTS.get(key)
        if full is None:
            if len(_OPTS) > 64:  # opts vary (e.g. max_steps per call): keep the cache small
                _OPTS.clear()
            full = _OPTS[key] = np.concatenate([opts, self.flags])
        funcs, g = fns
        if compiled:  # no events: a no-op event function (see sensitivity.ode.explicit)
            g = _no_events_addresses() if g is None else g
            kernel = aot.kernel(self.tableau.name) or self.kernel
        else:
            funcs, g = funcs[0], (no_events if g is None else g[0])
            kernel = python_twin(self.kernel)
        return kernel(funcs, g, t_span, y0, p, tol, full, t_eval, *ev)


METHODS = {
    "DP5": ExplicitRK(DP5),
    "Tsit5": ExplicitRK(TSIT5),
    "DP8": ExplicitRK(DP8),
    "BDF": bdf.BDF(),
    "TRBDF2": esdirk.ESDIRK(),
    "ESDIRK": esdirk.ESDIRK(),  # the ESDIRK built so far is TR-BDF2 (order 2, L-stable)
    "Rodas4": rosenbrock.Rodas4(),
}

STIFF_SIZE = 50  # method="auto": at least this many equations with a sparsity pattern -> BDF
AUTO_SWITCH_STEPS = 5000  # method="auto": Tsit5 steps before the stiffness test

MESSAGES = {
    SUCCESS: "The solver successfully reached the end of the integration interval.",
    TERMINATED: "A terminal event occurred at t = {t:.17g}.",
    STEP_TOO_SMALL: (
        "Step size underflow at t = {t:.17g}: the step fell below 10 eps |t| or to zero (the "
        "problem may be stiff or singular there; for stiffness try method='BDF')."
    ),
    MAX_STEPS: "max_steps = {max_steps} reached at t = {t:.17g} before the end of t_span.",
    NONFINITE: (
        "The right-hand side returned a non-finite value (NaN or inf) at t = {t:.17g} in "
        "component {i}."
    ),
    NEWTON_FAILED: (
        "Newton iteration failed to converge at t = {t:.17g} even with a fresh Jacobian, "
        "and the step size fell below 10 eps |t|."
    ),
}


def choose_method(prob):
    """Return the first method of ``method="auto"`` (the rule is in :func:`solve`).

    ``"BDF"`` when the problem declares a Jacobian sparsity pattern and has at least
    ``STIFF_SIZE`` equations (a method-of-lines discretisation, stiff by its spectrum);
    otherwise ``"Tsit5"``, which :func:`solve` replaces by ``"BDF"`` if the problem turns out
    to be stiff (:func:`looks_stiff`).
    """
    if getattr(prob, "jac_sparsity", None) is not None and prob.n >= STIFF_SIZE:
        return "BDF"
    return "Tsit5"


def looks_stiff(prob, sol, t0):
    """Return True if an explicit run ``sol`` that used up its step budget was stability-bound.

    Stiffness test: with the mean step h = |t_reached - t0| / nsteps and the Jacobian's
    infinity norm at the last state (a bound on its spectral radius), ``h ||J|| > 1`` means
    the step sizes were set by the explicit method's stability region (|h lambda| <~ 3.3 for
    Tsit5), not by accuracy (Shampine & Reichelt 1997, section 3.1 use the same reasoning).
    """
    if sol.t.size == 0 or sol.stats["nsteps"] == 0:
        return False
    h = abs(sol.t[-1] - t0) / sol.stats["nsteps"]
    J = prob.jacobian(float(sol.t[-1]), np.ascontiguousarray(sol.y[-1]))
    norm = abs(J).sum(axis=1).max()
    return bool(h * norm > 1.0)


def _method(prob, method):
    if hasattr(method, "run"):  # a configured method object, e.g. bdf.BDF(max_order=2)
        return method
    name = choose_method(prob) if method == "auto" else method
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method must be 'auto' or one of {sorted(METHODS)}, got {method!r}")
    return METHODS[name]


def _finite(x):
    """True if every entry of the 1-D float array ``x`` is finite: one sum (tiny arrays, as
    Python floats: numpy's reductions cost a microsecond of overhead) or one dot product,
    no temporary; a sum that overflows is rechecked entry by entry."""
    s = sum(x.tolist()) if x.size <= 16 else x.dot(x)
    return math.isfinite(s) or bool(np.isfinite(x).all())


def _check_prob(prob):
    try:
        y0, p, t_span, _, _ = prob.y0, prob.p, prob.t_span, prob.f, prob.rhs_kernel
    except AttributeError as exc:
        raise TypeError(f"prob must be an ODEProblem (missing attribute {exc.name!r})") from None
    y0 = np.ascontiguousarray(y0, dtype=np.float64)
    p = np.ascontiguousarray(p, dtype=np.float64)
    if y0.ndim != 1 or y0.size == 0:
        raise ValueError(f"prob.y0 must be a non-empty 1-D array, got shape {y0.shape}")
    if not _finite(y0):
        raise ValueError("prob.y0 must be finite")
    if p.ndim != 1 or not _finite(p):
        raise ValueError("prob.p must be a finite 1-D array")
    key, span = _recall(t_span) if type(t_span) is tuple else (None, None)  # as ODEProblem's
    if span is None:
        t0, t1 = map(float, t_span) if len(t_span) == 2 else (0.0, 0.0)
        if not (math.isfinite(t0) and math.isfinite(t1)) or t0 == t1:
            raise ValueError(f"prob.t_span must be two distinct finite times, got {prob.t_span}")
        span = _remember(key, np.array([t0, t1]))
    return y0, p, span


# Validated arrays by the arguments they came from: most solves repeat their t_span,
# tolerances and step options, and building each array costs about half a microsecond.
# The kernels only read them (a caller that changes one makes its own copy).
_MEMO = {}


def _recall(key):
    """``(key, the remembered array or None)``; key None for unhashable arguments."""
    try:
        return key, _MEMO.get(key)
    except TypeError:
        return None, None


def _remember(key, value):
    if key is not None:
        if len(_MEMO) > 256:
            _MEMO.clear()
        _MEMO[key] = value
    return value


def _check_tolerances(rtol, atol, n):
    key = ("tol", rtol, atol, n) if type(rtol) is float and type(atol) is float else None
    key, tol = _recall(key)
    return _remember(key, _tolerances(rtol, atol, n)) if tol is None else tol


def _tolerances(rtol, atol, n):
    rtol = float(rtol)
    if not (rtol > 0.0 and math.isfinite(rtol)):
        raise ValueError(f"rtol must be a positive finite number, got {rtol}")
    if rtol < 100 * EPS:
        raise ValueError(f"rtol must be >= 100 eps = {100 * EPS:.3g}, got {rtol}")
    tol = np.empty(n + 1)
    tol[0] = rtol
    if isinstance(atol, (float, int)) or np.ndim(atol) == 0:
        a = float(atol)
        if not (a > 0.0 and math.isfinite(a)):
            raise ValueError(f"atol must be positive and finite, got {a}")
        tol[1:] = a
        return tol
    a = np.asarray(atol, dtype=np.float64)
    if a.shape != (n,):
        raise ValueError(f"atol must be a scalar or an array of shape ({n},), got {a.shape}")
    if not (a.min() > 0.0 and _finite(a)):
        raise ValueError("atol must be positive and finite")
    tol[1:] = a
    return tol


def _check_t_eval(t_eval, t_span):
    if t_eval is None:
        return np.zeros(0), True
    te = np.ascontiguousarray(t_eval, dtype=np.float64)
    if te.ndim != 1:
        raise ValueError(f"t_eval must be 1-D, got shape {te.shape}")
    if te.size == 0:
        return te, False
    t0, t1 = t_span.tolist()
    forward = t1 > t0
    if not sorted_along(te, 1.0 if forward else -1.0):  # NaN fails too
        raise ValueError("t_eval must be sorted in the direction of integration")
    first, last = (te.item(0), te.item(-1)) if forward else (te.item(-1), te.item(0))
    lo, hi = (t0, t1) if forward else (t1, t0)
    if not (lo <= first and last <= hi):  # NaN fails too
        raise ValueError(f"t_eval must lie within t_span = [{t0}, {t1}]")
    return te, False


def _check_steps(first_step, max_step, max_steps, save_steps=False, dense=False):
    """The kernels' opts ``[first_step (0 = auto), max_step, max_steps, save_steps, record]``."""
    # the types in the key: 1 == 1.0 == True, but max_steps=1.0 is an error
    key = ("steps", first_step, type(first_step), max_step, type(max_step), max_steps,
           type(max_steps), bool(save_steps), bool(dense))  # fmt: skip
    key, opts = _recall(key)
    if opts is None:
        opts = _remember(key, _steps(first_step, max_step, max_steps, save_steps, dense))
    return opts


def _steps(first_step, max_step, max_steps, save_steps, dense):
    fs = 0.0 if first_step is None else float(first_step)
    if first_step is not None and not (fs > 0.0 and math.isfinite(fs)):
        raise ValueError(f"first_step must be positive and finite, got {first_step}")
    if not float(max_step) > 0.0:
        raise ValueError(f"max_step must be positive, got {max_step}")
    if not (isinstance(max_steps, (int, np.integer)) and max_steps > 0) or max_steps is True:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    return np.array([fs, float(max_step), float(max_steps), float(save_steps), float(dense)])


def _check_rhs_at_start(rhs, t0, y0, p):
    """Evaluate the right-hand side once in Python, so that errors name the cause.

    A compiled right-hand side is a pure function of its arguments (numba freezes globals),
    so the last point that passed is remembered on it: repeated solves of one problem skip
    the call (a microsecond or two of dispatch).
    """
    key = (t0, y0.tobytes(), p.tobytes())
    compiled = isinstance(rhs, Dispatcher)
    if compiled and getattr(rhs, "_sensitivity_checked", None) == key:
        return
    dydt = np.zeros(y0.size)
    try:
        rhs(t0, y0.copy(), p, dydt)
    except Exception as exc:
        raise ValueError(f"the right-hand side raised at t = {t0:.17g}: {exc!r}") from exc
    if not _finite(dydt):
        bad = np.flatnonzero(~np.isfinite(dydt))
        raise ValueError(
            f"the right-hand side returned a non-finite value at t = {t0:.17g} in component "
            f"{bad[0]} (y0 and p are finite)"
        )
    if compiled:
        rhs._sensitivity_checked = key


def _functions(prob, method, events, compiled, band=None):
    """Return ``(fns, g)``, the kernels' function arguments: ``fns`` the right-hand side
    and (stiff methods) the Jacobian, ``g`` the event function or None without events.

    Compiled, each is an int64 array of two addresses per function
    (:func:`sensitivity.ode.control.rhs_at`); otherwise tuples of the callables. With
    ``band = (kl, ku)`` the Jacobian is the banded one of
    :func:`sensitivity.ode.linsolve.band_jacobian`.
    """
    rhs = prob.rhs_kernel
    g = events.g if events is not None else None
    jac = getattr(prob, "jac_kernel", None) if getattr(method, "needs_jac", False) else None
    if band is not None and jac is not None:
        jac = linsolve.band_jacobian(prob, *band)
    if getattr(method, "needs_jac", False) and jac is None:
        raise ValueError("prob.jac_kernel is required by the stiff methods but is None")
    if not compiled:
        return (rhs, jac), (None if g is None else (g,))
    # kept on the right-hand side, like its addresses (a microsecond per solve() otherwise)
    memo = rhs.__dict__.setdefault("_sensitivity_fns", {})
    key = (jac, g)  # the functions themselves (hashed by identity), held by the memo
    if key in memo:
        return memo[key]
    sigs = [(rhs, RHS_SIG)] + ([(jac, JAC_SIG)] if jac is not None else [])
    try:
        addr = [a for func, sig in sigs for a in addresses(func, sig)]
        g_addr = None if g is None else np.array(addresses(g, RHS_SIG), dtype=np.int64)
    except Exception as exc:
        raise TypeError(
            "could not compile the right-hand side, Jacobian or event function with numba "
            f"for float64 arrays ({exc}); ODEProblem(..., compile=False) runs plain Python"
        ) from exc
    if len(memo) > 16:
        memo.clear()
    memo[key] = (np.array(addr, dtype=np.int64), g_addr)
    return memo[key]


_NO_EVENTS = (np.zeros(0, np.int64), np.zeros(0, np.int64))  # (the kernels only read them)
_NUMBA = isinstance(bdf.bdf_solve, Dispatcher)  # any module-level kernel: False without numba


def _is_compiled(prob, events):
    return (
        _NUMBA
        and getattr(prob, "compile", True)
        and isinstance(prob.rhs_kernel, Dispatcher)
        and (events is None or isinstance(events.g, Dispatcher))
    )


def solve(
    prob,
    method="auto",
    t_eval=None,
    rtol=1e-6,
    atol=1e-8,
    *,
    events=None,
    dense=False,
    first_step=None,
    max_step=np.inf,
    max_steps=100_000,
):
    """Solve the initial value problem ``prob`` and return a :class:`Solution`.

    Parameters
    ----------
    prob : ODEProblem
        Right-hand side, y0 (n,), t_span (may run backwards) and parameters p (m,).
    method : str or method object
        A key of :data:`METHODS` (``"Tsit5"``, ``"DP5"``, ``"DP8"``, ``"BDF"``, ``"ESDIRK"``
        = ``"TRBDF2"``), a configured entry such as ``BDF(max_order=2)``, or ``"auto"``:
        BDF for a large problem with a sparsity pattern (:func:`choose_method`), otherwise
        Tsit5; if Tsit5 uses up ``AUTO_SWITCH_STEPS`` steps and :func:`looks_stiff` finds
        its steps stability-bound, the solve restarts with BDF.
    t_eval : array_like, shape (nt,), optional
        Output times within ``t_span``, sorted in the direction of integration; filled from
        the dense output, never by stepping onto them. Default: every step.
    rtol : float
    atol : float or ndarray, shape (n,)
        Errors are kept below ``atol + rtol * |y|`` per step (in the RMS norm).

    Other Parameters
    ----------------
    events : Events, optional
        Event functions; crossings are reported in ``t_events``/``y_events``.
    dense : bool
        Keep the dense output so that ``sol(t)`` works anywhere in the solved interval.
    first_step, max_step : float
        Initial step (default: automatic, Hairer-Norsett-Wanner) and step bound.
    max_steps : int
        Accepted steps allowed before giving up with ``success=False``.

    Returns
    -------
    Solution

    Raises
    ------
    ValueError, TypeError
        On invalid arguments (naming the argument), a right-hand side that raises or is
        non-finite at the start, or one numba cannot compile.
    """
    return Solver(
        prob,
        method,
        t_eval,
        rtol,
        atol,
        events=events,
        dense=dense,
        first_step=first_step,
        max_step=max_step,
        max_steps=max_steps,
    )()


class Solver:
    """A validated, ready-to-run :func:`solve` for repeated solves with new p or y0.

    ``Solver(prob, method, t_eval, rtol, atol, **same keywords as solve)`` checks every
    argument once; ``solver(p=None, y0=None)`` then checks only the new vectors and runs the
    compiled kernel, which is what a fitting loop needs (a few microseconds of Python per
    solve instead of tens). ``solve(...)`` is ``Solver(...)()``.
    """

    def __init__(
        self,
        prob,
        method="auto",
        t_eval=None,
        rtol=1e-6,
        atol=1e-8,
        *,
        events=None,
        dense=False,
        first_step=None,
        max_step=np.inf,
        max_steps=100_000,
    ):
        self.y0, self.p, self.t_span = _check_prob(prob)
        if events is not None and not isinstance(events, Events):
            raise TypeError(f"events must be an Events instance, got {type(events).__name__}")
        self.prob, self.events, self.dense, self.max_steps = prob, events, dense, max_steps
        self.method = _method(prob, method)
        self.auto = method == "auto" and self.method is METHODS["Tsit5"]
        self.tol = _check_tolerances(rtol, atol, self.y0.size)
        self.t_eval, save_steps = _check_t_eval(t_eval, self.t_span)
        self.opts = _check_steps(first_step, max_step, max_steps, save_steps, dense)
        self.compiled = _is_compiled(prob, events)
        self.band = linsolve.band(prob) if self.compiled else None  # stiff methods' LU
        _check_rhs_at_start(prob.rhs_kernel, self.t_span[0], self.y0, self.p)
        self.ev = (events.direction, events.terminal) if events is not None else _NO_EVENTS
        self._fns = {}

    def __call__(self, p=None, y0=None):
        """Solve with parameters ``p`` (m,) and initial state ``y0`` (n,) (default: prob's)."""
        p = self.p if p is None else _check_vector(p, self.p.size, "p")
        y0 = self.y0 if y0 is None else _check_vector(y0, self.y0.size, "y0")
        if self.auto and self.max_steps > AUTO_SWITCH_STEPS:
            opts = self.opts.copy()
            opts[2] = AUTO_SWITCH_STEPS
            sol = self._run(self.method, p, y0, opts)
            if sol.status != MAX_STEPS:
                return sol
            if not looks_stiff(self.prob, sol, self.t_span[0]):  # just long: full budget
                return self._run(self.method, p, y0, self.opts)
            return self._run(METHODS["BDF"], p, y0, self.opts)
        return self._run(self.method, p, y0, self.opts)

    def _run(self, meth, p, y0, opts):
        """Run one method's kernel and wrap its trace into a :class:`Solution`."""
        setup = self._fns.get(id(meth))
        if setup is None:  # once per method: the kernels' function arguments and LU choice
            setup = self._fns[id(meth)] = self._setup(meth)
        fns, kwargs = setup
        trace = meth.run(
            fns, self.compiled, self.t_span, y0, p, self.tol, opts, self.t_eval, self.ev, **kwargs
        )
        return _solution(trace, meth, self.dense, self.events, int(opts[2]))

    def _setup(self, meth):
        """``(fns, kwargs)`` of ``meth.run``: the functions, and how a stiff method solves."""
        prob, events = self.prob, self.events
        stiff = getattr(meth, "needs_jac", False)
        band = self.band if stiff else None
        fns, kwargs = _functions(prob, meth, events, self.compiled, band), {}
        if band is not None:  # compiled banded LU
            kwargs["band"] = band
        elif stiff and linsolve.sparse_lu(prob):
            kwargs["sparse_jac"] = prob.jacobian
            kwargs["pattern"] = prob.jac_sparsity
            if not isinstance(fns[0], tuple):
                fns = ((prob.rhs_kernel, None), None if events is None else (events.g,))
        return fns, kwargs


def _check_vector(x, size, name):
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {x.shape}")
    if not _finite(x):
        raise ValueError(f"{name} must be finite")
    return x


def _solution(trace, meth, dense, events, max_steps):
    status, y_out, extra = trace  # extra: [t, component, nfev, ..., nreject, t_out, ...]
    status = int(status)  # a Python twin returns the numpy int64 of the status constants
    k, n = y_out.shape
    c = extra[:STATS].tolist()
    t_out = extra[STATS : STATS + k]
    ev_k = ev_t = ev_y = seg = None
    if events is not None or dense:  # most solves skip the unpacking
        ev_k, ev_t, ev_y, *seg = unpack_extra(extra, n, k)
    if status == SUCCESS:  # the common case, no message to format (a microsecond per solve)
        message = MESSAGES[SUCCESS]
    else:
        t_msg = ev_t[-1] if status == TERMINATED else c[0]
        message = MESSAGES[status].format(t=t_msg, i=int(c[1]), max_steps=max_steps)
    stats = {"nfev": int(c[2]), "njev": int(c[3]), "nlu": int(c[4]), "nsteps": int(c[5])}
    stats["nreject"] = int(c[6])
    t_events, y_events = [], []
    if events is not None:
        t_events = [ev_t[ev_k == k] for k in range(events.n)]
        y_events = [ev_y[ev_k == k] for k in range(events.n)]
    segments = (*seg, meth.anchor_at_end) if dense else None
    return Solution(t_out, y_out, status >= 0, status, message, stats, t_events, y_events, segments)


@jit(first_class=True)
def _decay(t, y, p, dydt):
    for i in range(y.shape[0]):
        dydt[i] = -p[0] * y[i]


@jit(first_class=True)
def _half_life(t, y, p, out):
    out[0] = y[0] - 0.5


@jit(first_class=True)
def _decay_jac(t, y, p, J):
    for i in range(y.shape[0]):
        for j in range(y.shape[0]):
            J[i, j] = -p[0] if i == j else 0.0


@dataclass(frozen=True)
class _WarmupProblem:
    """The attributes of ODEProblem that :func:`solve` reads, for :func:`warmup`."""

    y0: np.ndarray = field(default_factory=lambda: np.ones(2))
    p: np.ndarray = field(default_factory=lambda: np.ones(1))
    t_span: tuple = (0.0, 1.0)
    f: Callable = _decay
    rhs_kernel: Callable = _decay
    jac_kernel: Callable = _decay_jac
    jac_sparsity: object = None
    n: int = 2
    compile: bool = True


def warmup(methods=None, events=True):
    """Compile the JIT solver kernels of ``methods`` (default: all) into numba's disk cache.

    The kernels take the user's functions as first-class function addresses, so they do not
    depend on the problem: compiled once per installation, they load from the cache in every
    later process, and a first solve then only compiles (or loads) the user's right-hand
    side. The stiff methods have two kernels, without and with events (``events=False``
    skips the second). Returns the seconds spent. (``python -m sensitivity.ode.aot`` builds
    the same kernels ahead of time, which ``solve`` prefers: see :mod:`sensitivity.ode.aot`;
    this warms the JIT ones, which a changed source or another machine falls back to.)
    """
    import time

    start = time.perf_counter()
    with aot.jit_only():  # the JIT kernels, also when ahead-of-time ones are built
        for name in methods or METHODS:
            solve(_WarmupProblem(), name, t_eval=[0.5, 1.0])
            if events:
                solve(_WarmupProblem(), name, t_eval=[0.5, 1.0], events=Events(_half_life))
    return time.perf_counter() - start
