"""Event location: roots of g_k(t, y(t), p) on the dense output of each accepted step.

The user's events are one in-place function ``g(t, y, p, out)`` filling ``out`` (n_events,).
The steppers take it as ``g``: None when there are no events, which prunes the event code
from their compilation (numba drops ``if g is not None`` branches on a None argument), or
as the kernels take their right-hand side (:func:`sensitivity.ode.control.rhs_at`).
After every accepted step [t_old, t_new] the steppers compare signs of ``g`` at both ends.
Event ``k`` fires in the step when its sign changes in its ``direction`` (> 0: from negative
to non-negative; < 0: from positive to non-positive; 0: either). A start exactly on zero does
not fire, so a solve restarted at an event does not see it again. The crossing time is the
root of ``theta -> g_k(t(theta), y(theta))`` on the step's interpolant, found by the Illinois
variant of regula falsi (Dowell & Jarratt 1971), which keeps the root bracketed and converges
superlinearly, to ``4 eps max(|t|, |h|)`` in t.

Events firing in one step are reported in time order; the first terminal one ends the solve.
"""

from __future__ import annotations

import numpy as np

from sensitivity.ode.control import (
    borrow,
    copy1,
    copy2,
    grow_f1,
    grow_f2,
    grow_f3,
    grow_i1,
    jit,
    poly_eval,
    rhs_at,
)

MAX_ITER = 100  # Illinois iterations per root; each halves or better the bracket in practice


@jit(first_class=True)
def no_events(t, y, p, out):
    """Event function of an explicit solve without events (``out`` has length 0)."""
    return


@jit()
def crossed(ga, gb, direction):
    """Return True if an event with this ``direction`` fires between values ``ga`` and ``gb``."""
    up = ga < 0.0 and gb >= 0.0
    down = ga > 0.0 and gb <= 0.0
    if direction > 0:
        return up
    if direction < 0:
        return down
    return up or down


@jit(twin=True)
def locate(g, p, k, sa, sb, ga, gb, t_a, h, ya, Q, y_work, g_work):
    """Return the local coordinate s in [sa, sb] of the root of event ``k``.

    ``y(t_a + s h) = ya + sum_j Q[:, j] s**(j+1)``; ``ga``, ``gb`` are g_k at sa, sb.
    """
    eps = 4.0 * 2.220446049250313e-16
    side = 0
    for _ in range(MAX_ITER):
        if abs(sb - sa) * abs(h) <= eps * max(abs(t_a + sa * h), abs(h)):
            break
        s = (sa * gb - sb * ga) / (gb - ga)
        if not (min(sa, sb) < s < max(sa, sb)):
            s = 0.5 * (sa + sb)
        poly_eval(ya, Q, s, y_work)
        g(t_a + s * h, y_work, p, g_work)
        gs = g_work[k]
        if gs == 0.0:
            return s
        if (gs > 0.0) == (gb > 0.0):
            sb, gb = s, gs
            if side == 1:
                ga *= 0.5  # Illinois: halve the stale end's value
            side = 1
        else:
            sa, ga = s, gs
            if side == -1:
                gb *= 0.5
            side = -1
    return sb


@jit(twin=True)
def step_events(g, p, g_old, g_new, ev_dir, s0, s1, t_a, h, ya, Q, y_work, g_work):
    """Return (order, s) of the events firing in [s0, s1]: indices sorted by time, their s.

    ``order`` is an int64 array of the firing event indices in time order.
    """
    nev = g_old.shape[0]
    idx = np.empty(nev, np.int64)
    ss = np.empty(nev)
    m = 0
    for k in range(nev):
        if crossed(g_old[k], g_new[k], ev_dir[k]):
            ss[m] = locate(g, p, k, s0, s1, g_old[k], g_new[k], t_a, h, ya, Q, y_work, g_work)
            idx[m] = k
            m += 1
    # s increases along the direction of integration for every stepper's anchor convention;
    # insertion sort: m is tiny
    for i in range(1, m):
        j = i
        while j > 0 and ss[j - 1] > ss[j]:
            ss[j - 1], ss[j] = ss[j], ss[j - 1]
            idx[j - 1], idx[j] = idx[j], idx[j - 1]
            j -= 1
    return idx[:m], ss[:m]


@jit()
def new_trace(t0, y0, t_eval, save_steps, nev, q):
    """Return (bufs, ks): empty output buffers and their fill counts ``[k_out, ne, nseg]``.

    ``bufs = (t_out, y_out, ev_k, ev_t, ev_y, seg_t, seg_h, seg_y, seg_Q)``; outputs at
    ``t_eval`` points equal to ``t0`` (or the first saved step) are already filled.
    """
    n = y0.shape[0]
    cap = 64 if save_steps else t_eval.shape[0]
    ne = max(nev, 4)
    bufs = (
        np.empty(cap),
        np.empty((cap, n)),
        np.empty(ne, np.int64),
        np.empty(ne),
        np.empty((ne, n)),
        np.empty(64),
        np.empty(64),
        np.empty((64, n)),
        np.empty((64, n, q)),
    )
    bufs[5][0] = t0
    ks = np.zeros(3, np.int64)
    while ks[0] < cap and (save_steps or t_eval[ks[0]] == t0):
        bufs[0][ks[0]] = t0
        copy1(bufs[1][ks[0]], y0)
        ks[0] += 1
        if save_steps:
            break
    return bufs, ks


STATS = 7  # leading entries of a trace's extra: t and component of a failure, 5 counts


@jit()
def finish_trace(status, info, counts, bufs, ks):
    """Return the kernel's trace ``(status, y_out, extra)`` (``TRACE_T`` in
    :mod:`sensitivity.ode.control`), trimmed to the buffers' fill counts.

    numba allocates and boxes every returned array at about 0.3 us, a tenth of a small
    solve: so ``extra`` packs the stats ``[t, component of a failure, nfev, njev, nlu,
    nsteps, nreject]``, the output times (k,), and the events and the dense record, which
    most solves leave empty and Python unpacks only when asked (:func:`unpack_extra`).
    """
    t_out, y_out, ev_k, ev_t, ev_y, seg_t, seg_h, seg_y, seg_Q = bufs
    k, ne, nseg = ks[0], ks[1], ks[2]
    n, q = y_out.shape[1], seg_Q.shape[2]
    o = STATS + k  # the stats, then the output times
    extra = np.empty(o + 3 + ne * (2 + n) + 1 + nseg * (2 + n + n * q))
    extra[0], extra[1] = info[0], info[1]
    for i in range(5):
        extra[2 + i] = counts[i]
    copy1(extra[STATS:], t_out[:k])
    extra[o], extra[o + 1], extra[o + 2] = ne, nseg, q
    o += 3
    for j in range(ne):
        extra[o + j], extra[o + ne + j] = ev_k[j], ev_t[j]
    o += 2 * ne
    for x in (
        ev_y[:ne].ravel(),
        seg_t[: nseg + 1],
        seg_h[:nseg],
        seg_y[:nseg].ravel(),
        seg_Q[:nseg].ravel(),
    ):  # in the order of unpack_extra
        copy1(extra[o:], x)
        o += x.shape[0]
    return status, y_out[:k], extra


def unpack_extra(extra, n, k):
    """Views ``(ev_k, ev_t, ev_y, seg_t, seg_h, seg_y, seg_Q)`` into a trace's ``extra``
    (``n`` components, ``k`` outputs): event indices (ne,) int64, times (ne,), states
    (ne, n); the dense record's step bounds (nseg + 1,), steps (nseg,), start states
    (nseg, n) and coefficients (nseg, n, q)."""
    o = STATS + k
    ne, nseg, q = (int(v) for v in extra[o : o + 3].tolist())
    sizes = (ne, ne, ne * n, nseg + 1, nseg, nseg * n, nseg * n * q)
    shapes = ((ne,), (ne,), (ne, n), (nseg + 1,), (nseg,), (nseg, n), (nseg, n, q))
    out, o = [], o + 3
    for size, shape in zip(sizes, shapes):
        out.append(extra[o : o + size].reshape(shape))
        o += size
    out[0] = out[0].astype(np.int64)
    return tuple(out)


@jit(inline=True)
def wants_dense(record, nev, t_eval, ks, direction, t_new):
    """True if a step ending at ``t_new`` needs its interpolant: a dense record, events, or
    a ``t_eval`` point it covers (the next unfilled one is ``t_eval[ks[0]]``)."""
    k = ks[0]
    return record or nev > 0 or (k < t_eval.shape[0] and direction * (t_eval[k] - t_new) <= 0.0)


@jit(inline=True)
def emit_t_eval(t_eval, ks, t_end, t_a, h, ya, Q, t_out, y_out):
    """Fill the outputs at the ``t_eval`` points up to ``t_end`` from the step's interpolant."""
    direction = 1.0 if h > 0.0 else -1.0
    k = ks[0]
    while k < t_eval.shape[0] and direction * (t_eval[k] - t_end) <= 0.0:
        t_out[k] = t_eval[k]
        poly_eval(ya, Q, (t_eval[k] - t_a) / h, y_out[k])
        k += 1
    ks[0] = k


@jit(inline=True)
def borrow_bufs(bufs):
    """The buffer tuple of :func:`new_trace` as borrowed views (:func:`borrow`).

    The step loops work on these and keep the owning tuple only where it changes
    (:func:`make_room`, outside the step loop) and for :func:`finish_trace`: each copy of
    the owning tuple into an inlined helper, and each reassignment in the step loop, counts
    nine references up and down, atomically, which was about a fifth of a small BDF solve
    (Robertson) when done every step.
    """
    return (
        borrow(bufs[0]),
        borrow(bufs[1]),
        borrow(bufs[2]),
        borrow(bufs[3]),
        borrow(bufs[4]),
        borrow(bufs[5]),
        borrow(bufs[6]),
        borrow(bufs[7]),
        borrow(bufs[8]),
    )


@jit(inline=True)
def has_room(bufs, ks, save_steps, record, nev):
    """Whether ``bufs`` holds one more step's outputs: dense record, saved step and one
    firing of each of the ``nev`` events. A step loop reassigns its buffer tuple only when
    it does not (:func:`make_room`)."""
    nseg = ks[2]
    if record and (nseg + 2 > bufs[5].shape[0] or nseg + 1 > bufs[6].shape[0]):
        return False
    if nev > 0 and ks[1] + nev > bufs[2].shape[0]:
        return False
    return not (save_steps and ks[0] + 1 > bufs[0].shape[0])


@jit()
def make_room(bufs, ks, save_steps, record, nev):
    """Return ``bufs`` with room for one more step's outputs (:func:`has_room`), its
    arrays grown by doubling."""
    t_out, y_out, ev_k, ev_t, ev_y, seg_t, seg_h, seg_y, seg_Q = bufs
    nseg, k, ne = ks[2], ks[0], ks[1]
    if nev > 0 and ne + nev > ev_k.shape[0]:
        ev_k = grow_i1(ev_k, ne + nev)
        ev_t = grow_f1(ev_t, ne + nev)
        ev_y = grow_f2(ev_y, ne + nev)
    if record:
        seg_t = grow_f1(seg_t, nseg + 2)
        if nseg + 1 > seg_h.shape[0]:  # seg_h, seg_y, seg_Q share their capacity
            seg_h = grow_f1(seg_h, nseg + 1)
            seg_y = grow_f2(seg_y, nseg + 1)
            seg_Q = grow_f3(seg_Q, nseg + 1)
    if save_steps and k + 1 > t_out.shape[0]:
        t_out = grow_f1(t_out, k + 1)
        y_out = grow_f2(y_out, k + 1)
    return (t_out, y_out, ev_k, ev_t, ev_y, seg_t, seg_h, seg_y, seg_Q)


@jit(inline=True, twin=True)
def record_step(bufs, ks, t_end, h, ya, Q, y_new):
    """Append one step's dense output ``(t_end, h, ya, Q)`` to the segments of ``bufs``,
    which has room for it (:func:`has_room`, :func:`make_room`).

    Inline, so that a step loop without events records its step without calling
    :func:`accept_step` (a call with the nine-array buffer tuple costs ~300 ns a step).
    ``y_new`` is unused here; the recording pass of the checkpointed adjoints replaces
    this function by name and reads it.
    """
    nseg = ks[2]
    seg_t, seg_h, seg_y, seg_Q = borrow(bufs[5]), borrow(bufs[6]), borrow(bufs[7]), borrow(bufs[8])
    seg_t[nseg + 1] = t_end
    seg_h[nseg] = h
    copy1(seg_y[nseg], ya)  # compiled helpers: the Python twin copies at compiled speed
    copy2(seg_Q[nseg], Q)
    ks[2] += 1


@jit(twin=True)
def accept_step(
    g,
    p,
    ev_dir,
    ev_term,
    g_old,
    t_old,
    t_new,
    t_a,
    h,
    ya,
    Q,
    y_new,
    t_eval,
    save_steps,
    record,
    bufs,
    ks,
    y_work,
    g_work,
):
    """Record one accepted step: events, outputs at ``t_eval``, dense segment.

    The step's dense output is ``y(t_a + s h) = ya + sum_j Q[:, j] s**(j+1)``, covering
    s in [s0, s0 + 1] with s0 = (t_old - t_a) / h.
    ``g`` is None (no events) or the event function as the kernels take it. ``bufs`` has
    room for the step's outputs and for one firing of every event (:func:`has_room`).
    Returns ``(t_end, terminal)``: ``t_end`` is ``t_new`` or, after a terminal event, the
    event time, whose state is then ``bufs[4][ks[1] - 1]``.
    """
    t_out, y_out, ev_k, ev_t, ev_y = bufs[0], bufs[1], bufs[2], bufs[3], bufs[4]
    s0 = (t_old - t_a) / h
    t_end = t_new
    terminal = False
    if g is not None:  # pruned at compile time without events
        if g_old.shape[0] > 0:  # (the explicit kernel passes a no-op g: see explicit.py)
            gf = rhs_at(g, 0)
            g_new = np.empty(g_old.shape[0])
            gf(t_new, y_new, p, g_new)
            fired, s_fire = step_events(
                gf, p, g_old, g_new, ev_dir, s0, s0 + 1.0, t_a, h, ya, Q, y_work, g_work
            )
            for i in range(fired.shape[0]):  # each event fires at most once in a step
                ne = ks[1]
                ev_k[ne] = fired[i]
                ev_t[ne] = t_a + s_fire[i] * h
                poly_eval(ya, Q, s_fire[i], ev_y[ne])
                ks[1] += 1
                if ev_term[fired[i]] != 0:
                    terminal = True
                    t_end = ev_t[ne]
                    break
            copy1(g_old, g_new)
    # the tail of step_outputs written out: through it (a save_step call) saving every
    # step of an explicit solve took a third longer
    if record:  # the dense output, kept for dense=True and for the sensitivity solvers
        record_step(bufs, ks, t_end, h, ya, Q, y_new)
    k = ks[0]
    if save_steps:
        t_out[k] = t_end
        copy1(y_out[k], ev_y[ks[1] - 1] if terminal else y_new)
        ks[0] += 1
    else:
        emit_t_eval(t_eval, ks, t_end, t_a, h, ya, Q, t_out, y_out)
    return t_end, terminal


@jit(inline=True, twin=True)
def step_outputs(bufs, ks, save_steps, record, t_eval, t_end, t_a, h, ya, Q, y_end):
    """The outputs of an accepted step that ends at ``t_end`` in state ``y_end``: its dense
    record (``record``), then the step itself (``save_steps``) or the ``t_eval`` points it
    covers. ``bufs`` has room for them (:func:`has_room`, :func:`make_room`).

    Inline: the stiff kernels without events call this instead of :func:`accept_step`
    (whose call with the nine-array tuple costs ~300 ns a step, and whose compilation
    ~1.4 s). Saving every step goes through a call (:func:`save_step`), which keeps the
    t_eval path of the loop small. The explicit kernel and :func:`accept_step` keep their
    own branches (measured faster there; see :mod:`sensitivity.ode.explicit`).
    """
    if record:  # the dense output, kept for dense=True and for the sensitivity solvers
        record_step(bufs, ks, t_end, h, ya, Q, y_end)
    if save_steps:
        save_step(bufs, ks, t_end, y_end)
    else:
        emit_t_eval(t_eval, ks, t_end, t_a, h, ya, Q, borrow(bufs[0]), borrow(bufs[1]))


@jit(twin=True)
def save_step(bufs, ks, t_end, y_end):
    """Append ``(t_end, y_end)`` to the outputs (``bufs`` has room for it)."""
    k = ks[0]
    bufs[0][k] = t_end
    copy1(bufs[1][k], y_end)
    ks[0] += 1
