"""Forward sensitivities dy(t)/dp and dy(t)/dy0 through the integrators.

For K sensitivity directions at a time (a *chunk* of parameters and/or initial
values), the state carries its K partials: ``S = dy/d(direction)`` obeys the
variational equation ``S' = J S + f_p E`` (E the parameter seeds), and its
right-hand side comes from *one* compiled dual evaluation of the user's f
(:mod:`sensitivity.sens.kernels`); nobody writes an augmented system by hand.

* Explicit Runge-Kutta methods integrate ``[y, S]`` with the same tableau.
  The stages of S are then the derivatives of the stages of y, so with the
  step sizes held fixed the result is the exact derivative of the computed
  solution (internal differentiation).
* Implicit methods (BDF, and ESDIRK = TR-BDF2 stage by stage) use the staggered
  corrector of CVODES: after the Newton iteration for y (or for a stage of y)
  has converged, the sensitivities solve the linear corrector equations with the
  same factorised iteration matrix (:func:`sensitivity.ode.bdf.sens_corrector`);
  they run no Newton iteration of their own.
* Rodas4 (Rosenbrock) integrates ``[y, S]`` with the exact augmented Jacobian
  ``[[J, 0], [d(J S + f_p E)/dy, J]]``: each stage solves the y-stage with the plain
  method's LU, then the K sensitivity columns with the same LU, the lower-left block
  applied to the y-stage by one evaluation of f on second-order (nested) duals
  (:mod:`sensitivity.ode.rodas_sens`). With the steps held fixed this is the exact
  derivative of the Rodas4 solution (internal differentiation). Dense LU only: a
  problem whose pattern selects the banded/sparse LU is refused (use BDF or ESDIRK).

Parameters that enter through ``t_span`` (``wrt`` including ``"t_span"``, or
``t_span_dp``): with the output times held fixed, ``dy(t)/dt0 = -S_y0(t) f(t0, y0)``
is one extra sensitivity column started at ``-f(t0, y0)``; ``d y(tf)/d tf =
f(tf, y(tf))`` applies to outputs at ``t = tf``, which move with tf (zero elsewhere).

Error control (``error_control=``):

``"full"``
    the step-size error norm includes the sensitivities, with absolute
    tolerances ``atol / |p_j|`` for the column of parameter j (CVODES' pbar
    scaling; ``atol`` for initial values). Use it when the sensitivities
    themselves must be accurate to the tolerance (uncertainty analysis,
    identifiability).
``"partial"``
    only y controls the steps, which are then those of the plain solve; the
    sensitivities are the derivative of that discrete solution. Cheapest, and
    what a least-squares Jacobian needs (it differentiates the model the
    optimiser sees).
``"none"``
    an alias of ``"partial"`` kept for CVODES users (errconS = false).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sensitivity.ad import nb
from sensitivity.ode import bdf, esdirk, linsolve, rodas_sens, rosenbrock
from sensitivity.ode import solve as ode_solve
from sensitivity.ode.control import MAX_STEPS, RHS_SIG, addresses
from sensitivity.sens.dual2_kernels import aug_jvp_kernel
from sensitivity.sens.forward_kernels import sens_rhs

WRT = ("p", "y0", "both", "t_span")
ERROR_CONTROL = ("full", "partial", "none")
HUGE_ATOL = 1e300  # absolute tolerance that takes a component out of the error norm


@dataclass
class ForwardSensitivity:
    """Result of :func:`forward_sensitivity`.

    Attributes
    ----------
    t : ndarray, shape (nt,)
    y : ndarray, shape (nt, n)
    dy_dp : ndarray, shape (nt, n, m) or None
        Sensitivities to the parameters (None unless ``wrt`` includes "p"); with
        ``y0_dp``/``t_span_dp`` they include the parameters' effect through y0 and t_span.
    dy_dy0 : ndarray, shape (nt, n, n) or None
        Sensitivities to the initial values (None unless ``wrt`` includes "y0").
    success : bool
    status : int
    message : str
    stats : dict
        Counters summed over the chunks (nfev counts dual evaluations).
    method : str
    chunks : int
        Number of augmented solves (ceil(columns / K)).
    dy_dt_span : ndarray, shape (nt, n, 2) or None
        ``[dy/dt0, dy/dtf]`` at the output times (None unless ``wrt`` includes
        "t_span"): ``dy(t)/dt0 = -dy(t)/dy0 f(t0, y0)`` with t held fixed, and
        ``dy/dtf = f(tf, y(tf))`` at outputs at ``t = tf`` (they move with tf), else 0.
    """

    t: np.ndarray
    y: np.ndarray
    dy_dp: np.ndarray | None
    dy_dy0: np.ndarray | None
    success: bool
    status: int
    message: str
    stats: dict = field(default_factory=dict)
    method: str = ""
    chunks: int = 0
    dy_dt_span: np.ndarray | None = None


def forward_sensitivity(
    prob,
    t_eval=None,
    wrt="p",
    method="auto",
    rtol=1e-6,
    atol=1e-8,
    error_control="full",
    chunk=None,
    y0_dp=None,
    t_span_dp=None,
    **solve_options,
):
    """Solve ``prob`` together with its forward sensitivities.

    Parameters
    ----------
    prob : ODEProblem
    t_eval : array_like, shape (nt,), optional
        Output times (default: every step).
    wrt : {"p", "y0", "both", "t_span"} or tuple of {"p", "y0", "t_span"}
        Differentiate with respect to the parameters, the initial values, both, and/or
        the ends of ``t_span`` (module doc).
    method : str
        As :func:`sensitivity.solve` (explicit methods, ``"BDF"``, ``"ESDIRK"``,
        ``"Rodas4"``); ``"auto"`` picks as ``solve`` does.
    rtol, atol : float (atol also shape (n,))
        Tolerances of the solve.
    error_control : {"full", "partial", "none"}
        Whether the sensitivities take part in the step-size control (module doc).
    chunk : int, optional
        Sensitivity columns per augmented solve, K (default ``min(columns, 8)``).
        Every chunk is padded to K so that one compiled kernel serves all.
    y0_dp : array_like, shape (n, m), optional
        d y0 / d p, for initial values that depend on the parameters.
    t_span_dp : array_like, shape (2, m), optional
        ``[dt0/dp, dtf/dp]``, for parameters that set the interval (outputs at tf then
        move with it).
    **solve_options
        ``first_step``, ``max_step``, ``max_steps`` as for ``solve``.

    Returns
    -------
    ForwardSensitivity

    Raises
    ------
    ValueError
        For an unknown ``wrt`` or ``error_control``, ``chunk < 1``, non-finite
        parameters, badly shaped ``y0_dp``/``t_span_dp``, or ``method="Rodas4"`` on a
        problem whose Jacobian pattern selects the banded/sparse LU.

    See Also
    --------
    SensitivitySolver : the same, validated once and run for many p.
    """
    return SensitivitySolver(
        prob,
        t_eval,
        wrt,
        method,
        rtol,
        atol,
        error_control,
        chunk,
        y0_dp,
        t_span_dp=t_span_dp,
        **solve_options,
    )()


def _parse_wrt(wrt):
    """Return the set of {"p", "y0", "t_span"} that ``wrt`` names."""
    parts = (wrt,) if isinstance(wrt, str) else wrt
    try:
        parts = tuple(parts)
    except TypeError:
        parts = (wrt,)
    out = set()
    for w in parts:
        if not isinstance(w, str) or w not in WRT:
            raise ValueError(
                f"wrt must be one of {WRT} or a tuple of 'p', 'y0', 't_span', got {wrt!r}"
            )
        out.update(("p", "y0") if w == "both" else (w,))
    if not out:
        raise ValueError(f"wrt must name at least one of 'p', 'y0', 't_span', got {wrt!r}")
    return out


def _matrix(x, shape, name):
    if x is None:
        return None
    x = np.asarray(x, dtype=np.float64)
    if x.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite")
    return x


class SensitivitySolver:
    """A validated forward-sensitivity solve, to run repeatedly with new p or y0.

    ``SensitivitySolver(prob, t_eval, wrt, method, rtol, atol, error_control, chunk,
    y0_dp, t_span_dp=None, **solve_options)`` takes the arguments of
    :func:`forward_sensitivity` and checks them once; ``solver(p=None, y0=None)`` runs
    the compiled kernels (what a fitting loop needs). Buffers are reused between
    calls: one instance must not run in two threads at once.
    """

    kernel = staticmethod(sens_rhs)  # the augmented right-hand side's factory (f, K, compile)

    def __init__(
        self,
        prob,
        t_eval=None,
        wrt="p",
        method="auto",
        rtol=1e-6,
        atol=1e-8,
        error_control="full",
        chunk=None,
        y0_dp=None,
        t_span_dp=None,
        **solve_options,
    ):
        parts = _parse_wrt(wrt)
        if error_control not in ERROR_CONTROL:
            raise ValueError(f"error_control must be one of {ERROR_CONTROL}, got {error_control!r}")
        if chunk is not None and (
            isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1
        ):
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        n, m = prob.n, prob.m
        self.y0_dp = _matrix(y0_dp, (n, m), "y0_dp")
        self.t_span_dp = _matrix(t_span_dp, (2, m), "t_span_dp")
        self.prob, self.wrt, self.error_control = prob, wrt, error_control
        # validates prob (finite y0 and p), t_eval, tolerances and steps
        self.base = ode_solve.Solver(prob, method, t_eval, rtol, atol, **solve_options)
        self.name = method if isinstance(method, str) else type(method).__name__
        meth = self.base.method
        if getattr(meth, "stiff", False) and not (_implicit(meth) or _rosenbrock(meth)):
            raise ValueError(
                f"forward sensitivities run through the explicit methods, BDF, ESDIRK and "
                f"Rodas4; method {self.name!r} is not one of them"
            )
        if _rosenbrock(meth) and linsolve.sparse_lu(prob):
            raise ValueError(
                "method='Rodas4' sensitivities use a dense LU, but this problem's Jacobian "
                "pattern selects the banded/sparse LU: use method='BDF' or 'ESDIRK'"
            )
        # output columns: [p (m), y0 (n), t0 (1)], as far as wrt asks for them
        self.parts = parts
        self.columns = (
            (list(range(m)) if "p" in parts else [])
            + (list(range(m, m + n)) if "y0" in parts else [])
            + ([m + n] if "t_span" in parts else [])
        )
        if not self.columns:
            raise ValueError("there is nothing to differentiate: the problem has no parameters")
        self.K = int(chunk) if chunk is not None else min(len(self.columns), nb.CHUNK)
        self.chunks = [
            _Chunk(self, self.columns[c0 : c0 + self.K])
            for c0 in range(0, len(self.columns), self.K)
        ]
        self._f0_needed = any(ch.f0_needed for ch in self.chunks)
        tf_dp = self.t_span_dp is not None and self.t_span_dp[1].any() and "p" in parts
        self._tf_needed = "t_span" in parts or tf_dp

    def __call__(self, p=None, y0=None):
        """Run with parameters ``p`` (m,) and initial values ``y0`` (n,); default: prob's."""
        base = self.base
        p = base.p if p is None else ode_solve._check_vector(p, self.prob.m, "p")
        y0 = base.y0 if y0 is None else ode_solve._check_vector(y0, self.prob.n, "y0")
        f0 = self._rhs(base.t_span[0], y0, p) if self._f0_needed else None
        runs = [ch.run(p, y0, f0) for ch in self.chunks]
        return self._assemble(runs, p)

    def _rhs(self, t, y, p):
        out = np.empty(self.prob.n)
        self.prob.rhs_kernel(float(t), np.ascontiguousarray(y), p, out)
        return out

    def _assemble(self, runs, p):
        prob = self.prob
        n, m, K = prob.n, prob.m, self.K
        nt = min(sol.t.size for sol in runs)  # a failed chunk stops early: keep what all reached
        single = len(runs) == 1 and len(self.columns) == K
        if single:  # one unpadded chunk: a view, no copy
            S = runs[0].y[:, n:].reshape(nt, n, K)
        else:
            S = np.empty((nt, n, len(self.columns)))
        stats = dict.fromkeys(runs[0].stats, 0)
        ok, status, message = True, 0, runs[0].message
        c0 = 0
        for ch, sol in zip(self.chunks, runs):
            for key, v in sol.stats.items():
                stats[key] += v
            if not sol.success:
                ok, status, message = False, sol.status, sol.message
            k = len(ch.cols)
            if not single:
                S[:, :, c0 : c0 + k] = sol.y[:nt, n:].reshape(nt, n, K)[:, :, :k]
            c0 += k
        t, y = runs[0].t[:nt], runs[0].y[:nt, :n]
        parts, c0 = self.parts, 0
        dy_dp = dy_dy0 = dy_dt_span = None
        if "p" in parts:
            dy_dp, c0 = S[:, :, :m], m
        if "y0" in parts:
            dy_dy0, c0 = S[:, :, c0 : c0 + n], c0 + n
        if self._tf_needed:
            dtf = np.zeros((nt, n))
            at_end = np.flatnonzero(t == self.base.t_span[1])
            for k in at_end:
                dtf[k] = self._rhs(t[k], y[k], p)
            if dy_dp is not None and self.t_span_dp is not None:
                dy_dp = dy_dp + dtf[:, :, None] * self.t_span_dp[1]
            if "t_span" in parts:
                dy_dt_span = np.stack([S[:, :, c0], dtf], axis=-1)
        return ForwardSensitivity(
            t, y, dy_dp, dy_dy0, ok, status, message, stats, self.name, len(runs), dy_dt_span
        )


def _implicit(meth):
    return isinstance(meth, (bdf.BDF, esdirk.ESDIRK))


def _rosenbrock(meth):
    return isinstance(meth, rosenbrock.Rodas4)


class _Chunk:
    """One augmented solve: K sensitivity columns, its buffers and its compiled functions.

    Columns are global indices: ``j < m`` parameter j, ``m <= j < m + n`` y0[j - m],
    ``j = m + n`` the start time t0 (initial sensitivity ``-f(t0, y0)``).
    """

    def __init__(self, owner, cols):
        prob, base, K = owner.prob, owner.base, owner.K
        n, m = prob.n, prob.m
        self.owner, self.cols, self.n, self.m = owner, cols, n, m
        E, S0 = np.zeros((m, K)), np.zeros((n, K))  # zero padding keeps one kernel per K
        weights = [0.0] * K  # S0[:, c] -= w_c f(t0, y0), set per call
        self.pidx = [-1] * K
        for c, j in enumerate(cols):
            if j < m:
                E[j, c], self.pidx[c] = 1.0, j
                if owner.y0_dp is not None:
                    S0[:, c] = owner.y0_dp[:, j]
                if owner.t_span_dp is not None:
                    weights[c] = float(owner.t_span_dp[0, j])
            elif j < m + n:
                S0[j - m, c] = 1.0
            else:
                weights[c] = 1.0
        self.f0_weights = np.array(weights)
        self.f0_needed = any(w != 0.0 for w in weights)
        self.S0 = S0
        self.aug = _Augmented(prob, K, S0, E, cols, owner.kernel)
        self.P = self.aug.p.copy()
        self.Y0 = self.aug.y0.copy()
        self.implicit = _implicit(base.method)
        self.rosenbrock = _rosenbrock(base.method)
        # the stiff kernels take the error norm over the first n_err components: real
        # scales for S, which "partial" leaves out of the norm
        self.scaled = owner.error_control == "full" or self.implicit or self.rosenbrock
        self.atol_y = base.tol[1:]
        # scaled: the sensitivities' part follows |p_j| and is set by every run
        self.tol = self._tolerances(None, self.scaled)
        # the augmented Solver: base's validated settings on the augmented problem
        self.solver = object.__new__(type(base))  # a shallow copy, cheaper than copy.copy
        self.solver.__dict__.update(base.__dict__)
        self.solver.prob, self.solver.tol, self.solver._fns = self.aug, self.tol, {}
        self.solver.y0, self.solver.p = self.Y0, self.P
        if self.implicit:
            self._implicit_args = self._implicit_setup(base.method)
        if self.rosenbrock:
            self._rodas_args = self._rodas_setup(base.method)

    def _tolerances(self, p, scaled):
        """[rtol, atol] of the augmented state for parameters ``p`` (``None``: scaled
        sensitivities' entries left unset)."""
        n, K = self.n, self.owner.K
        rtol, atol_y = self.owner.base.tol[0], self.atol_y
        if scaled:
            # the implicit corrector needs real scales for S even when they do not
            # enter the error norm (n_err = n): atol / |p_j| (CVODES' pbar)
            tol = np.empty(1 + n + n * K)
            tol[0], tol[1 : 1 + n] = rtol, atol_y
            if p is not None:
                tol[1 + n :] = (atol_y[:, None] / self._scale(p)).ravel()
            return tol
        # RMS over N components with the sensitivities priced out: rescale y's
        # tolerances by sqrt(n/N) so that the norm equals the plain solve's
        c = np.sqrt(1.0 / (K + 1))
        return np.concatenate([[rtol * c], atol_y * c, np.full(n * K, HUGE_ATOL)])

    def _scale(self, p):
        """Column scales ``|p_j|`` (1 for initial values, t0, padding and p_j = 0)."""
        scale = np.ones(self.owner.K)
        values = p.tolist()  # a Python loop over floats: K is small, numpy calls cost more
        for c, j in enumerate(self.pidx):
            if j >= 0 and values[j] != 0.0:
                scale[c] = abs(values[j])
        return scale

    def run(self, p, y0, f0):
        """Solve the augmented system for ``p`` and ``y0``; returns a Solution."""
        n, m = self.n, self.m
        P, Y0 = self.P, self.Y0
        P[:m] = p
        Y0[:n] = y0
        if f0 is not None:
            Y0[n:] = (self.S0 - np.outer(f0, self.f0_weights)).ravel()
        if self.scaled:  # column scales follow |p_j|
            self.tol[1 + n :] = (self.atol_y[:, None] / self._scale(p)).ravel()
        base = self.owner.base
        if self.implicit:
            return self._run_implicit(base.method, P, Y0, base.opts, self.tol)
        if self.rosenbrock:
            return self._run_rodas(base.method, P, Y0, base.opts, self.tol)
        if not base.auto:
            return self.solver._run(base.method, P, Y0, base.opts)
        return self._run_auto(P, Y0)

    def _run_auto(self, P, Y0):
        """method="auto": switch to BDF as solve() does."""
        solver, opts = self.solver, self.solver.opts.copy()
        opts[2] = min(opts[2], ode_solve.AUTO_SWITCH_STEPS)
        sol = solver._run(solver.method, P, Y0, opts)
        if sol.status != MAX_STEPS:
            return sol
        if not ode_solve.looks_stiff(self.aug, sol, self.aug.t_span[0]):
            return solver._run(solver.method, P, Y0, solver.opts)
        meth = ode_solve.METHODS["BDF"]
        self._implicit_args = self._implicit_setup(meth)
        tol = self._tolerances(P[: self.m], True)  # the corrector needs real scales for S
        return self._run_implicit(meth, P, Y0, solver.opts, tol)

    def _implicit_setup(self, meth):
        """The function arguments of the BDF/ESDIRK kernels with the staggered corrector."""
        prob, aug = self.owner.prob, self.aug
        kwargs = dict(n_y=self.n, n_err=aug.n if self.owner.error_control == "full" else self.n)
        band = linsolve.band(prob) if self.solver.compiled else None  # compiled banded LU
        if band is None and linsolve.sparse_lu(prob):
            fns = ((prob.rhs_kernel, None), None)
            kwargs.update(sparse_jac=prob.jacobian, pattern=prob.jac_sparsity, sens=aug.rhs_kernel)
            return fns, False, kwargs
        if self.solver.compiled:
            fns = ode_solve._functions(prob, meth, None, True, band)
            kwargs["sens"] = np.array(addresses(aug.rhs_kernel, RHS_SIG), dtype=np.int64)
            if band is not None:
                kwargs["band"] = band
            return fns, True, kwargs
        kwargs["sens"] = aug.rhs_kernel
        return ((prob.rhs_kernel, prob.jac_kernel), None), False, kwargs

    def _run_implicit(self, meth, P, Y0, opts, tol):
        """BDF or ESDIRK: y runs Newton on the user's f and J, S the staggered corrector."""
        fns, compiled, kwargs = self._implicit_args
        s = self.solver
        p = np.ascontiguousarray(P[: self.m])
        trace = meth.run(fns, compiled, s.t_span, Y0, p, tol, opts, s.t_eval, s.ev, P=P, **kwargs)
        return ode_solve._solution(trace, meth, False, None, int(opts[2]))

    def _rodas_setup(self, meth):
        """The function arguments of :func:`sensitivity.ode.rodas_sens.rodas_sens_solve`."""
        prob, aug = self.owner.prob, self.aug
        jvp = aug_jvp_kernel(prob.rhs_kernel, self.owner.K, prob.compile)
        n_err = aug.n if self.owner.error_control == "full" else self.n
        compiled = self.solver.compiled
        fns = ode_solve._functions(prob, meth, None, compiled)
        if compiled:
            sens = np.array(addresses(aug.rhs_kernel, RHS_SIG), dtype=np.int64)
            jvp = np.array(addresses(jvp, rodas_sens.JVP_SIG), dtype=np.int64)
            return fns, True, sens, jvp, n_err
        return fns, False, aug.rhs_kernel, jvp, n_err

    def _run_rodas(self, meth, P, Y0, opts, tol):
        """Rodas4 on the augmented system with the exact augmented Jacobian (nested duals)."""
        fns, compiled, sens, jvp, n_err = self._rodas_args
        s = self.solver
        p = np.ascontiguousarray(P[: self.m])
        trace = rodas_sens.run(fns, compiled, s.t_span, Y0, p, tol, opts, s.t_eval, s.ev, sens,
                               jvp, P, self.n, n_err)  # fmt: skip
        return ode_solve._solution(trace, meth, False, None, int(opts[2]))


class _Augmented:
    """The problem ``[y, S]' = [f, J S + f_p E]`` that the integrators solve.

    State ``Y = [y (n), S (n, K) row-major]``, parameters ``P = [p (m), E (m, K)]``.
    """

    def __init__(self, prob, K, S0, E, cols, kernel=sens_rhs):
        self.prob, self.K, self.cols = prob, K, cols
        self.n = prob.n * (K + 1)
        self.f = prob.f
        self.y0 = np.concatenate([prob.y0, S0.ravel()])
        self.p = np.concatenate([prob.p, E.ravel()])
        self.t_span = prob.t_span
        self.compile = prob.compile
        self.rhs_kernel = kernel(prob.rhs_kernel, K, prob.compile)
        self.jac_sparsity = None

    def jacobian(self, t, Y):
        # the stiffness test of method="auto" needs only a norm bound: J's block
        return self.prob.jacobian(t, np.ascontiguousarray(Y[: self.prob.n]))
