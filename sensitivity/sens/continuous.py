"""Continuous adjoint: an interpolating adjoint with checkpoints and a parameter quadrature.

For ``G = sum_i g_i(t_i, y(t_i), p) + integral_{t0}^{t1} g(t, y(t), p) dt`` with
``y' = f(t, y, p)``, ``y(t0) = y0``, the adjoint state lam (n,) solves, backwards from
``lam(t1) = 0``,

    lam' = -J(t, y(t))^T lam - g_y(t, y(t), p),       J = df/dy,
    lam(t_i-) = lam(t_i+) + (g_i)_y(t_i, y(t_i), p)     (a jump at every observation),

and then ``dG/dy0 = lam(t0)`` and

    dG/dp = integral_{t0}^{t1} (lam^T f_p + g_p) dt + sum_i (g_i)_p,

(Cao, Li, Petzold & Serban, SIAM J. Sci. Comput. 24 (2003); Hindmarsh et al., CVODES,
ACM TOMS 31 (2005)). The backward system has size n; the parameter gradient is a
quadrature (Gauss-Legendre, :data:`QUAD_NODES` nodes on every adjoint step) of
``lam^T f_p``, evaluated from the compiled duals in ceil(m/K) sweeps per node, or, when
the problem has a parameter sparsity pattern (a per-cell field), from the coloured
sparse df/dp in a few sweeps whatever m is.

y(t) is never rebuilt by integrating the forward equation backwards (unstable for
dissipative problems): the forward pass stores checkpoints at the times
``T_0 = t0 < T_1 < ... < T_S = t1``; the backward pass re-solves each segment
``[T_k, T_{k+1}]`` from its checkpoint with dense output and integrates lam over it with
that interpolant, last segment first. With one segment (the default) the forward solve
itself keeps its dense output and nothing is recomputed. The segments are the steps of a
:mod:`sensitivity.sens.checkpoint` schedule (every segment stored, or binomial when the
memory budget allows fewer states).

Stiff problems (a stiff forward method, e.g. BDF) integrate lam with BDF on the
Jacobian ``-J^T`` (dense, or the transposed coloured sparse Jacobian with banded or
sparse LU for large n); non-stiff ones with Tsit5. The adjoint's own step sizes are
error-controlled at the forward ``rtol`` (``atol`` scaled to the size of lam), and it
restarts at every observation (the jumps). The result is an approximation to the
gradient of the exact solution, accurate to about the tolerance: its error shrinks
with rtol. For the exact gradient of the computed solution use ``kind="discrete"``.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from sensitivity.ode import linsolve
from sensitivity.ode import solve as ode_solve
from sensitivity.sens import checkpoint as cp
from sensitivity.sens import continuous_kernels as ck

QUAD_NODES = 3  # Gauss-Legendre nodes per step: exact for degree 5, as the dense outputs
ADJ_STIFF = "BDF"  # the adjoint's method for stiff problems
ADJ_ATOL = 1e-3  # adjoint atol = ADJ_ATOL * rtol * (scale of lam and of the jumps)
_GX, _GW = np.polynomial.legendre.leggauss(QUAD_NODES)
GAUSS_X, GAUSS_W = 0.5 * (_GX + 1.0), 0.5 * _GW  # on [0, 1]


def gauss_nodes(seg_t):
    """Gauss-Legendre nodes and weights on every step of the grid ``seg_t`` (N+1,).

    Returns ``T`` (N q,) and ``W`` (N q,) with ``sum W f(T) ~ integral`` oriented from
    ``seg_t[0]`` to ``seg_t[-1]`` (weights are negative on a backward grid).
    """
    h = np.diff(seg_t)
    T = (seg_t[:-1, None] + h[:, None] * GAUSS_X).ravel()
    W = (h[:, None] * GAUSS_W).ravel()
    return T, W


class _Backward:
    """The adjoint ODE of one piece, as the problem object :class:`ode_solve.Solver` reads.

    ``lam' = -J(t, y(t))^T lam - g_y``, integrated from ``t_span[0]`` back to
    ``t_span[1]``. Dense problems: compiled kernels reading y(t) from ``q``; problems
    with a Jacobian pattern: Python callables on the transposed sparse Jacobian.
    """

    def __init__(self, ctx, t_span, lam):
        self.t_span, self.y0, self.n = t_span, lam, lam.size
        self.f = ctx.rhs_kernel
        self.rhs_kernel, self.jac_kernel = ctx.rhs_kernel, ctx.jac_kernel
        self.p = ctx.q
        self.jac_sparsity = ctx.pattern_T
        self.jacobian = ctx.jacobian_T
        self.compile = ctx.compiled


class _Segment:
    """Forward dense output of one segment and the adjoint kernels reading it."""

    def __init__(self, run, sol):
        prob, self.sol = run.prob, sol
        self.run = run
        integral = run.integral
        span = None if integral is None else integral.span
        self.sparse = linsolve.sparse_lu(prob)  # small patterned problems: compiled dense
        self.compiled = prob.compile and not self.sparse
        g = None if integral is None else integral.g
        if self.sparse:
            self.q = np.zeros(1)
            self.rhs_kernel, self.jac_kernel = self._rhs, self._no_dense_jac
            self.pattern_T = prob.jac_sparsity.T.tocsr()
            self._J = prob.jac_sparsity.astype(float).tocsr()
            self._J.sort_indices()
            self._t_J = None
        else:
            self.q = ck.pack(run.p, sol.segments, span)
            self.rhs_kernel = ck.kernel("adj_rhs", prob.rhs_kernel, g, prob.compile)
            self.jac_kernel = ck.kernel("adj_jac", prob.rhs_kernel, g, prob.compile)
            self.pattern_T = None
        self.nbytes = sum(a.nbytes for a in sol.segments[:4]) + self.q.nbytes

    # ---- the sparse path (Python level, vectorised) -------------------------------------

    def _jac_at(self, t):
        if t != self._t_J:  # Newton iterations and the Jacobian ask at the same t
            tb = self.sol.segments[0]  # a difference quotient in t may step just outside
            y = np.ascontiguousarray(self.sol(min(max(t, min(tb[0], tb[-1])), max(tb[0], tb[-1]))))
            self.run.prob.jacobian_values(t, y, out=self._J.data, p=self.run.p)
            self._t_J, self._y_J = t, y
        return self._J

    def _rhs(self, t, lam, _q, out):
        J = self._jac_at(t)
        out[:] = -(J.T @ lam)
        if self.run.integral is not None:
            out -= self.run.integrand_gy(t, self._y_J)

    @staticmethod
    def _no_dense_jac(t, lam, q, J):  # the sparse path uses jacobian_T; never called
        raise AssertionError("the dense adjoint Jacobian is not used with a sparsity pattern")

    def jacobian_T(self, t, lam):
        return -(self._jac_at(t).T.tocsr())

    def param_vjp(self, T, Y, L, W, out):
        """``out += sum_k W_k L_k^T f_p(T_k, Y_k)``."""
        prob = self.run.prob
        if self.compiled or (prob.param_sparsity is None and prob.compile):
            kern = ck.kernel("param_quad", prob.rhs_kernel, None, prob.compile)
            kern(T, np.ascontiguousarray(Y), np.ascontiguousarray(L), W, self.run.p, out)
            return
        for k in range(T.size):
            Jp = prob.param_jacobian(float(T[k]), np.ascontiguousarray(Y[k]), self.run.p)
            out += W[k] * np.asarray(Jp.T @ L[k]).ravel()


class ContinuousAdjoint:
    """One continuous-adjoint gradient evaluation (see the module docstring).

    Parameters
    ----------
    prob : ODEProblem
    terms : list of Term
        Bound objective terms; at most one :class:`IntegralObjective`.
    t_all, owners : from :func:`sensitivity.sens.adjoint.observation_times`
    method : str
        Forward method (``"auto"`` allowed).
    rtol, atol : float
    p, y0 : ndarray
    """

    def __init__(self, prob, terms, t_all, owners, method, rtol, atol, p, y0):
        self.prob, self.terms, self.p, self.y0 = prob, terms, p, y0
        self.t_all, self.owners = t_all, owners
        self.method, self.rtol, self.atol = method, rtol, atol
        integrals = [t for t in terms if t.is_integral]
        if len(integrals) > 1:
            raise ValueError(
                "obj may hold at most one IntegralObjective; write the sum of integrands "
                "as one function g"
            )
        self.integral = integrals[0] if integrals else None
        self.stats = dict(forward_steps=0, backward_steps=0, nfev=0, njev=0, nlu=0)
        self.peak = 0
        self.value = 0.0
        self.lam = np.zeros(prob.n)
        self.grad_p = np.zeros(prob.m)
        self.t0, self.t1 = prob.t_span

    # ---- forward solves -----------------------------------------------------------------

    def solve_segment(self, a, b, x, t_eval, dense):
        """Solve from state x at a to b; return the Solution (fails -> RuntimeError)."""
        sub = copy.copy(self.prob)
        sub.t_span, sub.y0 = (a, b), x
        sol = ode_solve.Solver(sub, self.method, t_eval, self.rtol, self.atol, dense=dense)(
            p=self.p
        )
        if self.method == "auto" and dense:  # keep the method it settled on (BDF or Tsit5)
            self.method = "BDF" if sol.segments[4] else "Tsit5"
        self._count(sol, "forward_steps")
        if not sol.success:
            raise ContinuousFailed(f"forward solve on [{a}, {b}]: {sol.message}")
        return sol

    def _count(self, sol, key):
        self.stats[key] += sol.stats["nsteps"]
        for k in ("nfev", "njev", "nlu"):
            self.stats[k] += sol.stats[k]

    def integrand_gy(self, t, y):
        gy, gp = np.zeros(y.size), np.zeros(self.p.size)
        self.integral.density(t, y, self.p, gy, gp)
        return gy

    # ---- the backward pass over one segment ----------------------------------------------

    def reverse(self, a, b, x, first):
        """Re-solve [a, b] from x with dense output and carry lam from b back to a.

        Observations in (a, b] belong to this segment (in [a, b] for the ``first``).
        """
        sign = 1.0 if self.t1 >= self.t0 else -1.0
        inside = sign * self.t_all <= sign * b
        if not first:
            inside &= sign * self.t_all > sign * a
        idx = np.flatnonzero(inside)
        t_eval = self.t_all[idx] if idx.size else np.array([b])
        sol = self.solve_segment(a, b, x, t_eval, dense=True)
        self._fwd = sol
        seg = _Segment(self, sol)
        jumps = self._observations(idx, sol.y)
        if self.integral is not None:
            self._integral_terms(sol.segments[0])
        self.peak = max(self.peak, self.base_bytes + seg.nbytes)
        t = b
        for k in idx[::-1]:
            self._backward(seg, t, self.t_all[k])
            self.lam += jumps[k]
            t = self.t_all[k]
        self._backward(seg, t, a)

    def _observations(self, idx, Y):
        jumps = {}
        for row, k in enumerate(idx):
            term, i = self.owners[k]
            v, gy, gp = term.point(i, np.ascontiguousarray(Y[row]), self.p)
            self.value += v
            self.grad_p += gp
            jumps[k] = gy
        self.scale = max(self.scale, max((np.abs(g).max() for g in jumps.values()), default=0))
        return jumps

    def _integral_terms(self, seg_t):
        """Value and explicit g_p part of the integral over the forward steps of a segment."""
        lo, hi = min(self.integral.span), max(self.integral.span)
        T, W = gauss_nodes(np.clip(seg_t, lo, hi))  # oriented along the integration
        keep = W != 0.0
        T, W = T[keep], W[keep]
        if T.size == 0:
            return
        Y = np.ascontiguousarray(self._fwd(T))
        kern = ck.kernel("g_quad", self.prob.rhs_kernel, self.integral.g, self.prob.compile)
        self.value += kern(T, Y, W, self.p, self.grad_p)
        gy = np.abs(self.integrand_gy(float(T[-1]), Y[-1])).max()
        self.scale = max(self.scale, float(gy) * abs(seg_t[-1] - seg_t[0]))

    def _backward(self, seg, b, a):
        """Integrate lam from b back to a on the segment's interpolant; accumulate dG/dp."""
        if a == b:
            return
        self.scale = max(self.scale, float(np.abs(self.lam).max()))
        if self.scale == 0.0:  # lam = 0 and no source: nothing to carry
            return
        atol = ADJ_ATOL * self.rtol * self.scale
        meth = ADJ_STIFF if ode_solve._method(self.prob, self.method).stiff else "Tsit5"
        back = _Backward(seg, (b, a), self.lam.copy())
        sol = ode_solve.Solver(back, meth, np.array([a]), self.rtol, atol, dense=True)()
        self._count(sol, "backward_steps")
        if not sol.success:
            raise ContinuousFailed(f"adjoint solve on [{a}, {b}]: {sol.message}")
        self.peak = max(
            self.peak, self.base_bytes + seg.nbytes + sum(x.nbytes for x in sol.segments[:4])
        )
        T, W = gauss_nodes(sol.segments[0])
        W = -W  # the adjoint grid runs from b to a: integral_a^b = -sum over it
        seg.param_vjp(T, seg.sol(T), sol(T), W, self.grad_p)
        self.lam = np.ascontiguousarray(sol.y[-1])

    # ---- driver -------------------------------------------------------------------------

    def run(self, checkpoints=None, memory_budget=None):
        """Run the forward and backward passes; return (value, grad_p, grad_y0, stats)."""
        self.scale = 0.0
        self.base_bytes = 0
        n_bytes = self.prob.n * 8
        if checkpoints is None and memory_budget is None:
            self.reverse(self.t0, self.t1, self.y0, first=True)
            self.stats.update(recomputations=1.0, segments=1, schedule="store_all")
        else:
            S, sched = self._plan(checkpoints, memory_budget, n_bytes)
            T = np.linspace(self.t0, self.t1, S + 1)

            def advance(i, j, x):
                for k in range(i, j):
                    x = self.solve_segment(T[k], T[k + 1], x, np.array([T[k + 1]]), False).y[-1]
                return np.ascontiguousarray(x)

            def reverse(i, x):
                self.reverse(T[i], T[i + 1], x, first=(i == 0))

            alive = {"n": 0}

            def copy_state(x):
                alive["n"] += 1
                self.base_bytes = alive["n"] * n_bytes
                return np.array(x, copy=True)

            def release(x):
                alive["n"] -= 1
                self.base_bytes = alive["n"] * n_bytes

            st = cp.run(sched, self.y0.copy(), advance, reverse, copy=copy_state, release=release)
            self.stats.update(
                # every forward step taken (the sizing solve included) per step of one solve
                recomputations=self.stats["forward_steps"] / max(self._plain_steps, 1),
                segments=S,
                schedule=st.schedule,
                snapshots=st.peak_snapshots,
            )
        self.stats["peak_stored_bytes"] = int(self.peak)
        self.stats["stored_bytes"] = int(self.peak)
        self.stats["nsteps"] = self.stats["forward_steps"]
        return self.value, self.grad_p, self.lam, self.stats

    def _plan(self, checkpoints, memory_budget, n_bytes):
        """Number of segments and a checkpoint schedule for them (after one plain solve)."""
        if checkpoints is not None and not (
            isinstance(checkpoints, (int, np.integer)) and checkpoints >= 1
        ):
            raise ValueError(
                f"checkpoints must be a positive integer (time segments), got {checkpoints!r}"
            )
        budget = None if memory_budget is None else cp.parse_bytes(memory_budget)
        sol = ode_solve.Solver(self.prob, self.method, self.t_all, self.rtol, self.atol)(
            p=self.p, y0=self.y0
        )
        if not sol.success:
            raise ContinuousFailed(sol.message)
        self._count(sol, "forward_steps")
        self._plain_steps = sol.stats["nsteps"]
        S = 1 if checkpoints is None else int(checkpoints)
        if budget is None:
            return S, cp.store_all(S)
        # a segment's dense output: forward (y + 5 coefficients per step, twice with its
        # packed copy) and the adjoint's over its longest piece (restarts: +10 steps)
        per_step = 2 * 7 * n_bytes + 3 * 7 * n_bytes
        S = max(S, math.ceil(per_step * self._plain_steps / (0.5 * budget)))
        dense = per_step * (math.ceil(self._plain_steps / S) + 10)
        return S, cp.from_budget(S, n_bytes, budget, working_bytes=dense)


class ContinuousFailed(RuntimeError):
    """A forward or adjoint solve failed (reported as success=False)."""
