"""Discrete adjoints with checkpoints: bounded memory, the same gradient.

:func:`sensitivity.adjoint_gradient` with ``kind="discrete"`` and ``checkpoints`` or
``memory_budget``. The forward pass runs the solver's own step loop (the Python twin of its
kernel, :func:`sensitivity.ode.control.python_twin`, with the per-step recording replaced),
so the accepted steps are exactly those of a plain solve. It keeps

* every accepted step's end time t_{k+1} (8 bytes a step; h_k = t_{k+1} - t_k is the
  forward's h bitwise) and, for BDF, its order (1 byte);
* the states at the steps an :class:`~sensitivity.sens.checkpoint.OnlineCheckpointer`
  chooses (the step count is unknown until the end; the interval doubles when the
  snapshots are full): y_k for explicit RK, the differences ``D[:MAX_ORDER + 2]`` after
  the step for BDF;
* the observations y(t_obs) (from the step interpolants, as a plain solve reads them).

The reverse pass runs the checkpointer's schedule (:func:`sensitivity.sens.checkpoint.run`):
binomial (Revolve) schedules inside the segments between kept states; each "advance"
re-steps from a stored state with the recorded steps, each "reverse" transposes one step.

Explicit RK: re-stepping with the recorded h (FSAL stage reused as the forward did) gives
the forward states bitwise, so the gradient is that of the stored-steps adjoint to the last
bit (the per-step reverse is the same compiled kernel).

BDF: a step is replayed from the differences before it with the recorded size and order,
``E = RU(k, rho)^T D``, and its corrector ``d - c f(t_new, y_pred + d) + psi = 0`` solved by
full Newton (a fresh Jacobian per iteration) to ``REPLAY_TOL`` in units of the error
weights ``atol + rtol |y|``, far below the forward's Newton tolerance (about 1e-3 of them).
The replayed states are then the exact solutions of the corrector equations that the
transpose assumes (Zhang & Sandu's FATODE convention, [2] of
:mod:`sensitivity.sens.bdf_adjoint`); they differ from the forward's, which stop at its
Newton tolerance, by about that tolerance. So the gradient agrees with the stored-steps one
to about ``newton_tol * rtol`` relative (measured 1e-9 ... 1e-12), and both are the
gradient of the computed solution up to the Newton tolerance. Storing each step's
correction instead would cost n floats a step, as much as the stored steps themselves.

``peak_stored_bytes`` is measured: the step record's allocated arrays (both while it
grows), the checkpoints alive, counted as they are copied and released, each with its
array and object headers (``sys.getsizeof``), and one working state. With
``memory_budget`` the number of checkpoints is what fits beside the record, lowered
(:meth:`~sensitivity.sens.checkpoint.OnlineCheckpointer.shrink`) as the record grows; a
budget that cannot hold the record and three states raises :class:`BudgetError` (a
ValueError) naming ``memory_budget`` and the bytes needed.

The recording pass runs the solver kernel's Python twin: free for BDF with a banded or
sparse LU (that path is the twin already), an interpreted step loop otherwise (measured
7 ms for 115 Tsit5 steps of Lotka-Volterra; slow for explicit RK on large systems).
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

from sensitivity.ode import bdf, linsolve
from sensitivity.ode import solve as ode_solve
from sensitivity.ode.control import python_twin
from sensitivity.ode.events import emit_t_eval, no_events
from sensitivity.sens import bdf_adjoint as ba
from sensitivity.sens import checkpoint as cp
from sensitivity.sens.continuous import gauss_nodes
from sensitivity.sens.kernels import rk_restep_kernel, rk_stages_kernel

MAX_ORDER = bdf.MAX_ORDER
BDF_ROWS = MAX_ORDER + 2  # differences a replay can read: rows 0 ... k + 1, k <= MAX_ORDER
REPLAY_TOL = 1e-9  # replayed Newton: stop below this, in units of atol + rtol |y|
REPLAY_MAXITER = 12
ROUNDOFF_FLOOR = 1e-5  # an update this small that stopped shrinking is round-off
GROWTH = 1.5  # the step record grows by this factor (its allocation is what is counted)
_LOCAL = threading.local()  # .active: the recorders of the forward passes being run


class BudgetError(ValueError):
    """The memory budget cannot hold the minimum the checkpointed adjoint needs."""


class _Snap:
    """A stored state; :meth:`_Recorder.release` drops its array even where the snapshot
    is still referenced (the schedule's dict of initial checkpoints)."""

    __slots__ = ("x",)

    def __init__(self, x):
        self.x = x


class _Recorder:
    """The forward pass's record: step end times, BDF orders, online checkpoints, bytes."""

    def __init__(self, shape, snapshots, budget, with_orders, rows):
        # a checkpoint's bytes: its array with the object headers (they dominate small n)
        self.sb = sys.getsizeof(np.empty(shape)) + sys.getsizeof(_Snap(None))
        self.budget, self.rows = budget, rows
        self.with_orders = with_orders
        self.t = np.empty(16)
        self.orders = np.empty(16 if with_orders else 0, np.int8)
        self.n = 0  # steps recorded
        self.D, self.order = None, 1
        self.live, self.peak = 0, 0
        s = self._room() if snapshots is None else snapshots
        if budget is not None:
            s = min(s, self._room())
        self.oc = cp.OnlineCheckpointer(s, copy=self._copy)

    def record_bytes(self):
        return self.t.nbytes + self.orders.nbytes

    def _room(self, extra=0):
        """Snapshots the budget leaves beside the record (+ extra) and a working state."""
        s = (self.budget - self.record_bytes() - extra - self.sb) // self.sb
        if s < 2:
            need = self.record_bytes() + extra + 3 * self.sb
            when = f"after {self.n} steps (the solve goes on)" if self.n else "at the start"
            raise BudgetError(
                f"memory_budget = {self.budget} bytes is too small: {when} the step record "
                f"takes {self.record_bytes() + extra} bytes, and at least 3 states of "
                f"{self.sb} bytes (2 checkpoints and the working state) are needed: "
                f"{need} bytes or more"
            )
        return int(s)

    def _copy(self, snap):
        x = snap.x[: self.rows] if self.rows else snap.x
        return _Snap(np.array(x, copy=True))

    def start(self, t0, x0):
        self.t[0] = t0
        self.oc.record(0, _Snap(x0))
        self._measure()

    def step(self, t_new, state):
        if self.n + 2 > self.t.size:
            cap = int(self.t.size * GROWTH) + 1
            grown = cap * (self.t.itemsize + self.orders.itemsize * self.with_orders)
            # the old and the new record are both alive while it is copied: make room first
            if self.budget is not None and self._room(grown) < self.oc.n_snapshots:
                self.oc.shrink(self._room(grown))
            self.live = len(self.oc.store) * self.sb
            self.peak = max(self.peak, self.live + self.record_bytes() + grown + self.sb)
            self.t = np.resize(self.t, cap)
            if self.with_orders:
                self.orders = np.resize(self.orders, cap)
        self.n += 1
        self.t[self.n] = t_new
        if self.with_orders:
            self.orders[self.n - 1] = self.order
        self.oc.record(self.n, _Snap(state))
        self._measure()

    def _measure(self):
        self.live = len(self.oc.store) * self.sb
        self.peak = max(self.peak, self.live + self.record_bytes() + self.sb)

    def store_copy(self, snap):  # a schedule's "store": one more live checkpoint
        self.live += self.sb
        self.peak = max(self.peak, self.live + self.record_bytes() + self.sb)
        return _Snap(np.array(snap.x, copy=True))

    def release(self, snap):
        if snap.x is not None:
            self.live -= self.sb
            snap.x = None


def _accept_step(
    g, p, ev_dir, ev_term, g_old, t_old, t_new, t_a, h, ya, Q, y_new, t_eval, save_steps,
    record, bufs, ks, y_work, g_work,
):  # fmt: skip
    """:func:`sensitivity.ode.events.accept_step` of the recording forward pass: the step's
    end time and (maybe) a checkpoint instead of its dense output; outputs at t_eval."""
    rec = _LOCAL.active[-1]
    rec.step(t_new, y_new if rec.D is None else rec.D)
    emit_t_eval(t_eval, ks, t_new, t_a, h, ya, Q, bufs[0], bufs[1])
    return t_new, False


def _record_step(bufs, ks, t_end, h, ya, Q, y_new):
    """:func:`sensitivity.ode.events.record_step` of the recording forward pass (a step
    loop without events records here instead of in :func:`_accept_step`)."""
    rec = _LOCAL.active[-1]
    rec.step(t_end, y_new if rec.D is None else rec.D)


def _rk_stages(rhs, t, y, p, h, A, c, K, ytmp, i0, i1):
    """:func:`sensitivity.ode.explicit.rk_stages`, compiled for the recorder's problem
    (the twin would run the stage loops over n as Python)."""
    _LOCAL.active[-1].stages(t, y, p, h, A, c, K, ytmp, i0, i1)


def _update_D(D, d, order):
    """:func:`sensitivity.ode.bdf.update_D`, noting the differences and the step's order."""
    bdf.update_D(D, d, order)
    rec = _LOCAL.active[-1]
    rec.D, rec.order = D, order


def _forward(rec, run):
    """Run a twin with ``rec`` as the recorder its overrides see (per thread)."""
    if not hasattr(_LOCAL, "active"):
        _LOCAL.active = []
    _LOCAL.active.append(rec)
    try:
        return run()
    finally:
        _LOCAL.active.pop()


def _solution_of(trace, sv):
    """The :class:`~sensitivity.ode.solve.Solution` of a recording pass (no dense output)."""
    return ode_solve._solution(trace, sv.method, False, None, int(sv.opts[2]))


def check_args(checkpoints, memory_budget):
    """Validated (snapshots, budget bytes); either may be None (not both)."""
    if checkpoints is not None and not (
        isinstance(checkpoints, (int, np.integer))
        and not isinstance(checkpoints, bool)
        and checkpoints >= 2
    ):
        raise ValueError(
            f"checkpoints must be an integer >= 2 (states kept at once), got {checkpoints!r}"
        )
    budget = None
    if memory_budget is not None:
        budget = cp.parse_bytes(memory_budget)
        if budget <= 0:
            raise ValueError(f"memory_budget must be a positive size, got {memory_budget!r}")
    return (None if checkpoints is None else int(checkpoints)), budget


def forward_rk(sv, p, y0, snapshots, budget):
    """Recording forward pass of an explicit RK solve ``sv`` (a dense Solver)."""
    n = y0.size
    rec = _Recorder((n,), snapshots, budget, False, 0)
    rec.start(sv.t_span[0], y0)
    meth = sv.method
    rec.stages = rk_stages_kernel(sv.prob.rhs_kernel, sv.prob.compile)
    over = {"accept_step": _accept_step, "record_step": _record_step, "rk_stages": _rk_stages}
    twin = python_twin(meth.kernel, over)
    opts = np.concatenate([sv.opts, meth.flags])
    args = (sv.t_span, y0, p, sv.tol, opts, sv.t_eval, *sv.ev)
    trace = _forward(rec, lambda: twin(sv.prob.rhs_kernel, no_events, *args))
    return rec, _solution_of(trace, sv)


def forward_bdf(sv, p, y0, snapshots, budget):
    """Recording forward pass of a BDF solve ``sv`` (a dense Solver)."""
    prob, n = sv.prob, y0.size
    rec = _Recorder((BDF_ROWS, n), snapshots, budget, True, BDF_ROWS)
    rec.start(sv.t_span[0], np.zeros((BDF_ROWS, n)))  # the start D is rebuilt from y0
    over = {"accept_step": _accept_step, "record_step": _record_step, "update_D": _update_D}
    if linsolve.sparse_lu(prob):
        over.update(linsolve.choose(prob.jac_sparsity))
        jac = prob.jacobian
    else:
        jac = prob.jac_kernel
    twin = python_twin(bdf.bdf_solve, over)
    meth = sv.method
    # [..., n_y, n_err] = 0 (no sensitivities), nls_coef, then the dense band [-1, -1]: the
    # twin's LU is dense, or a Python-level override for patterned problems (linsolve.workspace)
    opts = linsolve.with_band(np.concatenate([sv.opts, meth.extra_opts(0, 0)]))
    rhs = prob.rhs_kernel
    args = (sv.t_span, y0, p, sv.tol, opts, sv.t_eval, *sv.ev, p)
    trace = _forward(rec, lambda: twin((rhs, jac, rhs), None, *args))
    return rec, _solution_of(trace, sv)


def step_of(t_obs, t_rec):
    """Step of each observation (-1 at t0): the first step ending at or after it."""
    sign = 1.0 if t_rec[-1] >= t_rec[0] else -1.0
    step = np.searchsorted(sign * t_rec, sign * t_obs, side="left") - 1
    step = np.clip(step, 0, t_rec.size - 2)
    step[sign * t_obs <= sign * t_rec[0]] = -1
    return step


def _integral_nodes(integral, t_a, t_b):
    """Gauss nodes and weights of the integral term on the step [t_a, t_b]."""
    lo, hi = min(integral.span), max(integral.span)
    T, W = gauss_nodes(np.clip(np.array([t_a, t_b]), lo, hi))
    keep = W != 0.0
    return T[keep], W[keep]


class _Reverse:
    """The reverse pass: per-step transposes, observation rows, value and gradient parts."""

    def __init__(self, prob, rec, t_obs, obs_g, p, integral):
        self.prob, self.p = prob, p
        self.t = rec.t[: rec.n + 1]  # a view of the record: t_0 ... t_N
        self.t_obs, self.obs_g, self.integral = t_obs, obs_g, integral
        self.step = step_of(t_obs, self.t)
        self.grad_p = np.zeros(prob.m)
        self.value = 0.0

    def step_rows(self, i, dense):
        """Times and dG/dy rows read from step i's interpolant ``dense(T) -> y(T)``."""
        idx = np.flatnonzero(self.step == i)
        T, G = self.t_obs[idx], self.obs_g[idx]
        if self.integral is not None:
            Ti, W = _integral_nodes(self.integral, self.t[i], self.t[i + 1])
            if Ti.size:
                Y = dense(Ti)
                gy, gp = np.empty(self.prob.n), np.empty(self.p.size)
                Gi = np.empty((Ti.size, self.prob.n))
                for q in range(Ti.size):
                    self.value += W[q] * self.integral.density(float(Ti[q]), Y[q], self.p, gy, gp)
                    Gi[q] = W[q] * gy
                    self.grad_p += W[q] * gp
                sign = 1.0 if self.t[-1] >= self.t[0] else -1.0
                T, G = np.concatenate([T, Ti]), np.concatenate([G, Gi])
                order = np.argsort(sign * T, kind="stable")
                T, G = T[order], G[order]
        return T, G

    def at_t0(self):
        return self.obs_g[self.step < 0].sum(axis=0)


def reverse_rk(prob, tab, kernel, locate, rec, t_obs, obs_g, p, y0, integral):
    """Reverse pass of a recorded RK forward pass.

    ``tab = (a, b, c, P)``, ``kernel`` the compiled reverse sweep of
    :func:`sensitivity.sens.kernels.rk_adjoint_kernel`, ``locate`` the observation
    weights of :func:`sensitivity.sens.adjoint._locate`. Returns (value of the integral
    term, grad_p part, grad_y0, CheckpointStats).
    """
    a, b, c, P = tab
    s = b.size
    restep = rk_restep_kernel(prob.rhs_kernel, prob.compile)
    rv = _Reverse(prob, rec, t_obs, obs_g, p, integral)
    t = rv.t
    lam = np.zeros(prob.n)

    def advance(i, j, snap):
        return _Snap(restep(t, i, j, snap.x, p, a, b, c))

    def dense(i, y):
        def at(T):  # the step's interpolant y + sum_j Q_j s^(j+1), from its stages
            h = t[i + 1] - t[i]
            K = np.empty((s, prob.n))
            for st in range(s):
                prob.rhs_kernel(t[i] + c[st] * h, y + h * (a[st, :st] @ K[:st]), p, K[st])
            Q = h * (K.T @ P)
            S = ((T - t[i]) / h)[:, None] ** np.arange(1, P.shape[1] + 1)
            return y + S @ Q.T

        return at

    def reverse(i, snap):
        T, G = rv.step_rows(i, dense(i, snap.x))
        seg_t = t[i : i + 2]
        seg_h = np.array([seg_t[1] - seg_t[0]])
        ostep, ow = locate(T, seg_t, seg_h, P)
        ostep[:] = 0  # every row belongs to this step (t0 rows are added at the end)
        y = np.ascontiguousarray(snap.x[None, :])
        rv.grad_p += kernel(seg_t, seg_h, y, p, a, b, c, lam, ostep, ow, G)

    st = _run(rec, advance, reverse)
    lam += rv.at_t0()
    return rv.value, rv.grad_p, lam, st


def replay_bdf(lin, prob, p, D, k, h, rho, t_new, rtol, atol):
    """Replay one BDF step of order k and size h from the differences D before it.

    Returns the differences after it, shape (BDF_ROWS, n) (module docstring), or raises
    RuntimeError if the full Newton iteration does not reach ``REPLAY_TOL``.
    """
    E = D.copy()
    E[: k + 1] = ba.rescale_matrix(k, rho).T @ D[: k + 1]
    y_pred = E[: k + 1].sum(axis=0)
    psi = bdf.GAMMA[1 : k + 1] @ E[1 : k + 1] / bdf.ALPHA[k]
    c = h / bdf.ALPHA[k]
    scale = atol + rtol * np.abs(y_pred)
    d = np.zeros_like(y_pred)
    f = np.empty_like(y_pred)
    old, J = np.inf, lin.jacobian(t_new, y_pred)
    for it in range(REPLAY_MAXITER):
        y = y_pred + d
        prob.rhs_kernel(t_new, y, p, f)
        dy = lin.solve(J, c, c * f - psi - d)
        d += dy
        w = dy / scale
        norm = math.sqrt(w @ w / w.size)
        rate = norm / old
        # converged (directly, or by the contraction estimate of the remaining error), or
        # at the round-off floor: a tiny update that stopped shrinking
        if norm <= REPLAY_TOL or (rate < 1.0 and rate / (1.0 - rate) * norm <= REPLAY_TOL):
            break
        if rate >= 0.5 and norm <= ROUNDOFF_FLOOR:
            break
        if rate > 0.2:  # slow: renew J at the iterate (full Newton) for what remains
            J = lin.jacobian(t_new, y_pred + d)
        old = norm
    else:
        raise RuntimeError(f"the replayed BDF corrector did not converge at t = {t_new:.17g}")
    out = np.zeros((BDF_ROWS, y.size))
    out[: k + 1] = E[: k + 1]
    if k + 2 < BDF_ROWS:
        out[k + 2] = d - E[k + 1]
    out[k + 1] = d
    for j in range(k, -1, -1):
        out[j] += out[j + 1]
    return out


def reverse_bdf(prob, rec, t_obs, obs_g, p, y0, integral, rtol, atol):
    """Reverse pass of a recorded BDF forward pass; returns (value part, grad_p, grad_y0, st)."""
    rv = _Reverse(prob, rec, t_obs, obs_g, p, integral)
    t, orders = rv.t, rec.orders
    lin = ba._Linear(prob, p)
    Dbar = np.zeros((BDF_ROWS, prob.n))
    f0 = np.empty(prob.n)
    prob.rhs_kernel(t[0], y0, p, f0)

    def h_of(i):
        return t[i + 1] - t[i]

    def before(i, snap):  # the differences before step i (the start D for i = 0)
        if i > 0:
            return snap.x
        D = np.zeros((BDF_ROWS, prob.n))
        D[0], D[1] = y0, h_of(0) * f0
        return D

    def replay(i, D):
        rho = h_of(i) / h_of(i - 1) if i > 0 else 1.0
        k = int(orders[i])
        return replay_bdf(lin, prob, p, D, k, h_of(i), rho, t[i + 1], rtol, atol)

    def advance(i, j, snap):
        D = before(i, snap)
        for q in range(i, j):
            D = replay(q, D)
        return _Snap(D)

    def reverse(i, snap):
        Dn = replay(i, before(i, snap))
        k, h = int(orders[i]), h_of(i)

        def dense(T):
            W = np.array([ba.dense_weights(s, k) for s in (T - t[i + 1]) / h])
            return W @ Dn[: k + 1]

        T, G = rv.step_rows(i, dense)
        for q in range(T.size - 1, -1, -1):
            Dbar[: k + 1] += np.outer(ba.dense_weights((T[q] - t[i + 1]) / h, k), G[q])
        rho = h / h_of(i - 1) if i > 0 else 1.0
        rv.grad_p += ba.reverse_step(lin, Dbar, k, h, rho, float(t[i + 1]), Dn[0])

    st = _run(rec, advance, reverse)
    ybar, gp = ba.reverse_start(lin, Dbar, float(t[0]), h_of(0), y0)
    return rv.value, rv.grad_p + gp, ybar + rv.at_t0(), st


def _run(rec, advance, reverse):
    """Run the online checkpointer's reverse schedule, counting the checkpoints alive."""
    sched = rec.oc.schedule(rec.n)
    # the final state (if kept) is never read: the schedule starts from the others
    store = {j: snap for j, snap in rec.oc.store.items() if j < rec.n}
    rec.oc.store = {}
    rec.live = len(store) * rec.sb
    return cp.run(
        sched,
        None,
        advance,
        reverse,
        copy=rec.store_copy,
        checkpoints=store,
        restore_copies=False,
        release=rec.release,
    )
