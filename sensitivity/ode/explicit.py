"""Compiled adaptive explicit Runge-Kutta integration with dense output and events.

One source serves every tableau of :mod:`sensitivity.ode.tableaus` (compiled once per
tableau, see :func:`rk_kernel`): for a step h from (t, y) with ``K_1 = f(t, y)``::

    K_i   = f(t + c_i h, y + h sum_{j<i} a_ij K_j),   y_new = y + h sum_i b_i K_i
    err   = h sum_i e_i K_i,                          accepted when ||err|| <= 1

(Hairer, Norsett & Wanner I, II.4) with the PI controller of :mod:`~sensitivity.ode.control`.
The dense output of a step is ``y(t + s h) = y + sum_j Q[:, j] s**(j+1)``, ``Q[:, j] = h sum_i
K_i P_ij``, which serves ``t_eval`` (never by stepping onto the points), events and
:class:`~sensitivity.ode.solve.Solution`.

:func:`rk_kernel` returns the integrator of one method, compiled with its tableau as
constants and taking the user's functions by address (so the on-disk cache is reused
across processes and problems). Unlike the stiff kernels, which prune their event code when
there are no events, this loop keeps it (a no-op event function): without it the step loop
of the generic kernel measured 10-18% slower at n = 10 (LLVM optimises the smaller
function worse).
"""

from __future__ import annotations

import math

import numpy as np

from sensitivity.ode.control import (
    LOG_ERR_FLOOR,
    MAX_STEPS,
    MIN_FACTOR,
    NONFINITE,
    SAFETY,
    STEP_TOO_SMALL,
    SUCCESS,
    TERMINATED,
    borrow,
    copy1,
    error_norm,
    hold,
    initial_step,
    jit,
    pi_factor,
    rhs_at,
    step_too_small,
)
from sensitivity.ode.events import (
    accept_step,
    borrow_bufs,
    emit_t_eval,
    finish_trace,
    has_room,
    make_room,
    new_trace,
    record_step,
    wants_dense,
)


@jit(inline=True, twin=True)
def rk_stages(rhs, t, y, p, h, A, c, K, ytmp, i0, i1):
    """Fill stages ``K[i0:i1]`` of one step, given the earlier ones (``K[0] = f(t, y)``)."""
    n = K.shape[1]
    for i in range(i0, i1):
        for m in range(n):
            acc = 0.0
            for j in range(i):
                acc += A[i, j] * K[j, m]
            ytmp[m] = y[m] + h * acc
        rhs(t + c[i] * h, ytmp, p, K[i])


@jit(inline=True)
def rk_combine(y, h, w, K, out):
    """Set ``out = y + h sum_i w_i K_i`` (pass ``y`` of zeros for the error)."""
    s, n = w.shape[0], K.shape[1]
    for m in range(n):
        acc = 0.0
        for i in range(s):
            acc += w[i] * K[i, m]
        out[m] = y[m] + h * acc


@jit(inline=True)
def rk_dense(h, P, K, Q):
    """Set the dense-output coefficients ``Q[:, j] = h sum_i K_i P_ij``."""
    s, n = K.shape
    for m in range(n):
        for j in range(P.shape[1]):
            acc = 0.0
            for i in range(s):
                acc += K[i, m] * P[i, j]
            Q[m, j] = h * acc


@jit()
def first_nonfinite(t, h, c, K, y_new, s):
    """Return (t, component) of the first non-finite stage value (component -1 if none)."""
    n = K.shape[1]
    for i in range(s):
        for m in range(n):
            if not math.isfinite(K[i, m]):
                return t + c[i] * h, m
    for m in range(n):
        if not math.isfinite(y_new[m]):
            return t + h, m
    return t, -1


def rk_kernel(A, b, c, e, e3, P):
    """Return the integrator of one explicit RK pair: ``rk_solve`` compiled with its tableau
    ``A, b, c, e, e3, P`` (:class:`~sensitivity.ode.tableaus.ButcherTableau`; rows of A
    beyond ``len(b)`` are dense-output stages) as compile-time constants.

    With constant coefficients and stage counts LLVM unrolls the stage loops and folds the
    coefficients: 30 % less time per step at n = 10 and 11 % at n = 2 than one kernel that
    takes the tableau as arrays, with bitwise the same results. numba caches a closure per
    value of its cells, so each method's kernel is compiled once and cached.
    """

    @jit(twin=True)
    def rk_solve(fns, g, t_span, y0, p, tol, opts, t_eval, ev_dir, ev_term):
        """Integrate ``y' = rhs(t, y, p)`` over ``t_span`` with the closure's RK pair.

        Parameters
        ----------
        fns, g : the right-hand side and the event function ``(t, y, p, out)`` (``g`` fills
            the event values; without events the no-op
            :func:`~sensitivity.ode.events.no_events`): compiled, their addresses (int64
            (2,) each, :func:`~sensitivity.ode.control.rhs_at`); in Python, the callables.
        t_span : ndarray (2,);  y0 : ndarray (n,);  p : ndarray (m,)
        tol : ndarray (n + 1,)  ``[rtol, atol_0, ..., atol_{n-1}]``.
        opts : ndarray (9,)  ``[first_step (0 = auto), max_step, max_steps, save_steps, record,
            err_order, fsal, reuse_dense_stage, combined_error]``; ``record`` keeps the dense
            output of every step.
        t_eval : ndarray (nt,)  output times, sorted along the direction of integration.
        ev_dir, ev_term : int64 arrays (n_events,)  direction and terminal flags.

        Returns
        -------
        trace : tuple, see ``TRACE_T`` in :mod:`sensitivity.ode.control`.
        """
        rhs, gf = rhs_at(fns, 0), rhs_at(g, 0)
        n, s, s_all = y0.shape[0], b.shape[0], A.shape[0]
        rtol, atol = tol[0], tol[1:]
        t0, t_end = t_span[0], t_span[1]
        direction = 1.0 if t_end >= t0 else -1.0
        max_step, max_steps, save_steps = opts[1], int(opts[2]), opts[3] > 0.0
        record, k_ctrl, fsal = opts[4] > 0.0, opts[5] + 1.0, opts[6] > 0.0
        reuse, combined = opts[7] > 0.0, opts[8] > 0.0
        # The work arrays enter the loop as borrowed views (no reference counting per use);
        # their owners are held to the end of the function.
        K_own, y_own, Q_own, w_own = (
            np.empty((s_all, n)),
            y0.copy(),
            np.empty((n, P.shape[1])),
            np.zeros((5, n)),
        )
        K, y, Q, w = borrow(K_own), borrow(y_own), borrow(Q_own), borrow(w_own)
        y_new, err, ytmp, zero, err3 = w[0], w[1], w[2], w[3], w[4]
        p = borrow(p)  # (the tableau is constant: nothing to count)
        atol, t_eval = borrow(atol), borrow(t_eval)
        g_old, g_work = np.empty(ev_dir.shape[0]), np.empty(ev_dir.shape[0])
        counts = np.zeros(5, np.int64)  # nfev, njev, nlu, nsteps, nreject
        info = np.zeros(2)  # t and component of a failure
        owners, ks_own = new_trace(t0, y0, t_eval, save_steps, ev_dir.shape[0], P.shape[1])
        bufs, ks = borrow_bufs(owners), borrow(ks_own)  # owners: only where they change
        rhs(t0, y, p, K[0])
        gf(t0, y, p, g_old)
        counts[0] = 1
        status = SUCCESS
        h_abs = opts[0]
        if h_abs <= 0.0:
            h_abs = initial_step(
                rhs, t0, y, K[0], p, direction, opts[5], rtol, atol, max_step, ytmp, y_new
            )
            counts[0] += 1
        t, log_prev, rejected = t0, LOG_ERR_FLOOR, False
        while True:  # again only after make_room: owners is not carried by the step loop
            # (a tuple reassigned in a loop counts its nine references at every back edge)
            while direction * (t - t_end) < 0.0 and has_room(
                bufs, ks, save_steps, record, ev_dir.shape[0]
            ):
                if counts[3] >= max_steps or step_too_small(h_abs, t):
                    status = MAX_STEPS if counts[3] >= max_steps else STEP_TOO_SMALL
                    info[0] = t
                    break
                t_new = t + direction * min(h_abs, max_step)
                if direction * (t_new - t_end) > 0.0:
                    t_new = t_end
                h = t_new - t
                rk_stages(rhs, t, y, p, h, A, c, K, ytmp, 1, s)
                counts[0] += s - 1
                rk_combine(y, h, b, K, y_new)
                rk_combine(zero, h, e, K, err)
                if combined:
                    rk_combine(zero, h, e3, K, err3)
                    en = combined_norm(err, err3, y, y_new, rtol, atol)
                else:
                    en = error_norm(err, y, y_new, rtol, atol)
                if not math.isfinite(en):
                    t_bad, comp = first_nonfinite(t, h, c, K, y_new, s)
                    if comp >= 0:
                        info[0], info[1], status = t_bad, comp, NONFINITE
                        break
                if not (en <= 1.0):
                    h_abs = abs(h) * max(MIN_FACTOR, SAFETY * (en ** (-1.0 / k_ctrl)))
                    rejected = True
                    counts[4] += 1
                    continue
                dense = wants_dense(record, ev_dir.shape[0], t_eval, ks, direction, t_new)
                if dense:  # only when someone reads the interpolant
                    rk_stages(rhs, t, y, p, h, A, c, K, ytmp, s, s_all)
                    counts[0] += s_all - s
                    rk_dense(h, P, K, Q)
                terminal, t_stop = False, t_new
                if ev_dir.shape[0] > 0 or save_steps:
                    t_stop, terminal = accept_step(
                        gf,
                        p,
                        ev_dir,
                        ev_term,
                        g_old,
                        t,
                        t_new,
                        t,
                        h,
                        y,
                        Q,
                        y_new,
                        t_eval,
                        save_steps,
                        record,
                        bufs,
                        ks,
                        ytmp,
                        g_work,
                    )
                elif record:  # no events: the dense record inline, no call with the buffer tuple
                    record_step(bufs, ks, t_new, h, y, Q, y_new)
                    emit_t_eval(t_eval, ks, t_new, t, h, y, Q, borrow(bufs[0]), borrow(bufs[1]))
                else:  # fast path: only outputs at t_eval
                    emit_t_eval(t_eval, ks, t_new, t, h, y, Q, borrow(bufs[0]), borrow(bufs[1]))
                counts[3] += 1
                if terminal:
                    status = TERMINATED
                    break
                if fsal:  # first same as last: the last stage is f(t_new, y_new)
                    copy1(K[0], K[s - 1])
                elif reuse and dense:  # the first dense stage was f(t_new, y_new)
                    copy1(K[0], K[s])
                else:
                    rhs(t_new, y_new, p, K[0])
                    counts[0] += 1
                t = t_new
                copy1(y, y_new)
                fac, log_prev = pi_factor(en, log_prev, k_ctrl, rejected)
                h_abs, rejected = abs(h) * fac, False
            if status != SUCCESS or not direction * (t - t_end) < 0.0:
                break
            owners = make_room(owners, ks, save_steps, record, ev_dir.shape[0])
            bufs = borrow_bufs(owners)
        hold(K_own, y_own, Q_own, w_own)
        return finish_trace(status, info, counts, owners, ks_own)

    return rk_solve


@jit(inline=True)
def combined_norm(err, err3, y, y_new, rtol, atol):
    """Hairer's DOP853 error: |E5|^2 / sqrt(n (|E5|^2 + 0.01 |E3|^2)) (HNW I, II.10)."""
    n = err.shape[0]
    e5 = 0.0
    e3 = 0.0
    for i in range(n):
        sc = atol[i] + rtol * max(abs(y[i]), abs(y_new[i]))
        e5 += (err[i] / sc) ** 2
        e3 += (err3[i] / sc) ** 2
    deno = e5 + 0.01 * e3
    if deno > 0.0:
        return e5 / math.sqrt(n * deno)
    return 0.0 if deno == 0.0 else deno  # deno is NaN when a stage is non-finite
