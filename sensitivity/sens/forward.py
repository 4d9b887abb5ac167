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
* Implicit methods (BDF) use the staggered corrector of CVODES: after the
  Newton iteration for y has converged, the sensitivities solve the linear
  corrector equations with the same factorised iteration matrix
  (:mod:`sensitivity.sens.bdf_sens`); they run no Newton iteration of their own.

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
from sensitivity.ode import bdf
from sensitivity.ode import solve as ode_solve
from sensitivity.ode.control import MAX_STEPS, RHS_SIG, addresses
from sensitivity.ode.events import no_events
from sensitivity.sens.kernels import seeds, sens_rhs_kernel

WRT = ("p", "y0", "both")
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
        Sensitivities to the parameters (None unless ``wrt`` includes "p").
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
    **solve_options,
):
    """Solve ``prob`` together with its forward sensitivities.

    Parameters
    ----------
    prob : ODEProblem
    t_eval : array_like, shape (nt,), optional
        Output times (default: every step).
    wrt : {"p", "y0", "both"}
        Differentiate with respect to the parameters, the initial values, or both.
    method : str
        As :func:`sensitivity.solve`; ``"auto"`` picks as ``solve`` does.
    rtol, atol : float (atol also shape (n,))
        Tolerances of the solve.
    error_control : {"full", "partial", "none"}
        Whether the sensitivities take part in the step-size control (module
        doc).
    chunk : int, optional
        Sensitivity columns per augmented solve, K (default ``min(columns,
        8)``). Every chunk is padded to K so that one compiled kernel serves all.
    y0_dp : array_like, shape (n, m), optional
        d y0 / d p, for initial values that depend on the parameters.
    **solve_options
        ``first_step``, ``max_step``, ``max_steps`` as for ``solve``.

    Returns
    -------
    ForwardSensitivity

    See Also
    --------
    SensitivitySolver : the same, validated once and run for many p.
    """
    return SensitivitySolver(
        prob, t_eval, wrt, method, rtol, atol, error_control, chunk, y0_dp, **solve_options
    )()


class SensitivitySolver:
    """A validated forward-sensitivity solve, to run repeatedly with new p or y0.

    ``SensitivitySolver(prob, t_eval, wrt, method, rtol, atol, error_control, chunk,
    y0_dp, **solve_options)`` takes the arguments of :func:`forward_sensitivity`
    and checks them once; ``solver(p=None, y0=None)`` runs the compiled
    kernels (what a fitting loop needs).
    """

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
        **solve_options,
    ):
        if wrt not in WRT:
            raise ValueError(f"wrt must be one of {WRT}, got {wrt!r}")
        if error_control not in ERROR_CONTROL:
            raise ValueError(f"error_control must be one of {ERROR_CONTROL}, got {error_control!r}")
        if chunk is not None and (not isinstance(chunk, (int, np.integer)) or chunk < 1):
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        if not np.all(np.isfinite(prob.p)):
            raise ValueError("parameters must be finite")
        n, m = prob.n, prob.m
        self.columns = (list(range(m)) if wrt in ("p", "both") else []) + (
            list(range(m, m + n)) if wrt in ("y0", "both") else []
        )
        if not self.columns:
            raise ValueError("there is nothing to differentiate: the problem has no parameters")
        if y0_dp is not None:
            y0_dp = np.asarray(y0_dp, dtype=np.float64)
            if y0_dp.shape != (n, m):
                raise ValueError(f"y0_dp must have shape (n, m) = ({n}, {m}), got {y0_dp.shape}")
        self.prob, self.wrt, self.error_control, self.y0_dp = prob, wrt, error_control, y0_dp
        self.K = int(chunk) if chunk is not None else min(len(self.columns), nb.CHUNK)
        self.base = ode_solve.Solver(prob, method, t_eval, rtol, atol, **solve_options)
        self.name = method if isinstance(method, str) else type(method).__name__
        meth = self.base.method
        if getattr(meth, "stiff", False) and not isinstance(meth, bdf.BDF):
            raise ValueError(
                f"forward sensitivities run through the explicit methods and BDF; method "
                f"{self.name!r} has no sensitivity corrector yet (use method='BDF')"
            )
        self.chunks = []
        for c0 in range(0, len(self.columns), self.K):
            cols = self.columns[c0 : c0 + self.K]
            E, S0 = self._seeds(cols)
            aug = _Augmented(prob, self.K, S0, E, self, cols)
            rtol_a, atol_a = self._tolerances(cols, prob.p)
            b = self.base
            solver = ode_solve.Solver(
                aug,
                b.method,
                b.t_eval if b.t_eval.size else None,
                rtol_a,
                atol_a,
                first_step=_opt(b.opts[0]),
                max_step=b.opts[1],
                max_steps=int(b.opts[2]),
            )
            self.chunks.append((cols, E, S0, aug, solver))

    def _seeds(self, cols):
        n, m = self.prob.n, self.prob.m
        E, S0 = seeds(m, n, cols)
        if self.y0_dp is not None:
            for c, j in enumerate(cols):
                if j < m:
                    S0[:, c] = self.y0_dp[:, j]
        pad = self.K - len(cols)  # zero columns keep one compiled kernel for every chunk
        return np.pad(E, ((0, 0), (0, pad))), np.pad(S0, ((0, 0), (0, pad)))

    def _tolerances(self, cols, p):
        n, m, K = self.prob.n, self.prob.m, self.K
        rtol, atol_y = self.base.tol[0], self.base.tol[1:]
        if self.error_control == "full" or self._implicit(self.base.method):
            # the implicit corrector needs real scales for S even when they do not
            # enter the error norm (n_err = n)
            scale = np.ones(K)
            for c, j in enumerate(cols):
                if j < m and p[j] != 0.0:
                    scale[c] = abs(p[j])
            return rtol, np.concatenate([atol_y, (atol_y[:, None] / scale[None, :]).ravel()])
        # RMS over N components with the sensitivities priced out: rescale y's
        # tolerances by sqrt(n/N) so that the norm equals the plain solve's
        c = np.sqrt(1.0 / (K + 1))
        return rtol * c, np.concatenate([atol_y * c, np.full(n * K, HUGE_ATOL)])

    @staticmethod
    def _implicit(meth):
        return isinstance(meth, bdf.BDF)

    def __call__(self, p=None, y0=None):
        """Run with parameters ``p`` (m,) and initial values ``y0`` (n,); default: prob's."""
        p = self.prob.p if p is None else ode_solve._check_vector(p, self.prob.m, "p")
        y0 = self.prob.y0 if y0 is None else ode_solve._check_vector(y0, self.prob.n, "y0")
        runs = []
        for cols, E, S0, aug, solver in self.chunks:
            P = np.concatenate([p, E.ravel()])
            Y0 = np.concatenate([y0, S0.ravel()])
            if self.error_control == "full" or self._implicit(solver.method):
                rtol_a, atol_a = self._tolerances(cols, p)  # column scales follow |p_j|
                solver.tol = np.concatenate([[rtol_a], atol_a])
            runs.append((cols, _run(solver, aug, self.base, P, Y0, self.error_control)))
        return _assemble(self.prob, runs, self.wrt, self.name)


def _opt(first_step):
    return None if first_step <= 0.0 else first_step


def _run(solver, aug, base, P, Y0, error_control):
    """Run an augmented solve; with method="auto", switch to BDF as solve() does."""
    if isinstance(solver.method, bdf.BDF):
        return _run_bdf(solver, aug, solver.method, P, Y0, solver.opts, error_control)
    if not base.auto:
        return solver._run(solver.method, P, Y0, solver.opts)
    opts = solver.opts.copy()
    opts[2] = min(opts[2], ode_solve.AUTO_SWITCH_STEPS)
    sol = solver._run(solver.method, P, Y0, opts)
    if sol.status != MAX_STEPS:
        return sol
    if not ode_solve.looks_stiff(aug, sol, aug.t_span[0]):
        return solver._run(solver.method, P, Y0, solver.opts)
    _, atol_a = aug.owner._tolerances(aug.cols, P[: aug.prob.m])
    solver.tol = np.concatenate([[solver.tol[0]], atol_a])
    return _run_bdf(solver, aug, ode_solve.METHODS["BDF"], P, Y0, solver.opts, error_control)


def _run_bdf(solver, aug, meth, P, Y0, opts, error_control):
    """BDF with the staggered sensitivity corrector (:func:`sensitivity.ode.bdf.bdf_solve`).

    y runs its Newton iteration on the user's f and Jacobian; ``aug.rhs_kernel`` (the dual
    evaluation of ``[f, J S + f_p]``) serves the corrector.
    """
    prob = aug.prob
    n, N = prob.n, aug.n
    p = np.ascontiguousarray(P[: prob.m])
    kwargs = dict(P=P, n_y=n, n_err=N if error_control == "full" else n)
    if prob.jac_sparsity is not None:
        fns = (prob.rhs_kernel, no_events, None)
        kwargs.update(sparse_jac=prob.jacobian, pattern=prob.jac_sparsity, sens=aug.rhs_kernel)
        compiled = False
    elif solver.compiled:
        fns = ode_solve._functions(prob, meth, None, True)
        kwargs["sens"] = np.array(addresses(aug.rhs_kernel, RHS_SIG), dtype=np.int64)
        compiled = True
    else:
        fns = (prob.rhs_kernel, no_events, prob.jac_kernel)
        kwargs["sens"] = aug.rhs_kernel
        compiled = False
    trace = meth.run(
        fns, compiled, solver.t_span, Y0, p, solver.tol, opts, solver.t_eval, solver.ev, **kwargs
    )
    return ode_solve._solution(trace, meth, False, None, int(opts[2]))


class _Augmented:
    """The problem ``[y, S]' = [f, J S + f_p E]`` that the integrators solve.

    State ``Y = [y (n), S (n, K) row-major]``, parameters ``P = [p (m), E (m, K)]``.
    """

    def __init__(self, prob, K, S0, E, owner, cols):
        self.prob, self.K, self.owner, self.cols = prob, K, owner, cols
        self.n = prob.n * (K + 1)
        self.f = prob.f
        self.y0 = np.concatenate([prob.y0, S0.ravel()])
        self.p = np.concatenate([prob.p, E.ravel()])
        self.t_span = prob.t_span
        self.compile = prob.compile
        self.rhs_kernel = sens_rhs_kernel(prob.rhs_kernel, K, prob.compile)
        self.jac_sparsity = None

    def jacobian(self, t, Y):
        # the stiffness test of method="auto" needs only a norm bound: J's block
        return self.prob.jacobian(t, np.ascontiguousarray(Y[: self.prob.n]))


def _assemble(prob, runs, wrt, name):
    n, m = prob.n, prob.m
    first = runs[0][1]
    nt = first.t.size
    ncols = (m if wrt in ("p", "both") else 0) + (n if wrt in ("y0", "both") else 0)
    S = np.zeros((nt, n, ncols))
    stats = dict.fromkeys(first.stats, 0)
    ok, status, message = True, 0, first.message
    offset = 0 if wrt in ("p", "both") else m
    for cols, sol in runs:
        for key, v in sol.stats.items():
            stats[key] += v
        if not sol.success:
            ok, status, message = False, sol.status, sol.message
        if sol.t.size != nt:
            # an unsuccessful chunk stopped early: report what every chunk reached
            nt = min(nt, sol.t.size)
            S = S[:nt]
        K = (sol.y.shape[1] - n) // n
        block = sol.y[:nt, n:].reshape(nt, n, K)
        for c, j in enumerate(cols):
            S[:, :, j - offset] = block[:, :, c]
    dy_dp = S[:, :, :m] if wrt in ("p", "both") else None
    dy_dy0 = S[:, :, ncols - n :] if wrt in ("y0", "both") else None
    return ForwardSensitivity(
        first.t[:nt], first.y[:nt, :n], dy_dp, dy_dy0, ok, status, message, stats, name, len(runs)
    )
