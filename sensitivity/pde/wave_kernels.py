"""Compiled sweeps of the 2-D acoustic scheme of :mod:`sensitivity.pde.wave`.

Layout
------
A field is a flat, C-ordered padded array of ``(nx + 4) * W`` values, ``W = nz +
4``: node ``(i, j)`` is ``u[(i + 2) * W + j + 2]`` and the halo (two cells on
every side) holds zeros. A sweep runs over the ``n = nx * W`` consecutive values
of rows ``2 ... nx + 1``, halo columns included, as one loop with the neighbours
``k +- 1, k +- 2`` (along z) and ``k +- W, k +- 2W`` (along x). The per-node
coefficients are zero in the halo columns, so those stay zero, and the loop has
no branches and no row ends: it vectorises (SIMD) whole, unlike a nested loop
whose rows of ``nz`` nodes leave a scalar remainder each.

Each neighbour is read through a view that starts where its offset puts it, so
that every index is the loop counter itself (a non-negative index needs no
wrap-around test, which would stop the vectoriser).

Update
------
With ``A = m (1/dt^2 + sigma/(2 dt))``, ``C = 2 m/dt^2``, ``B = m (1/dt^2 -
sigma/(2 dt))`` the leapfrog step ``u' = A^{-1}[(C + L) u - B u_]`` is, with
``alpha = A^{-1} C = 2 / (1 + sigma dt/2)`` and ``A^{-1} B = alpha - 1``,

    u' = alpha (u - u_) + u_ + A^{-1} L u,

two coefficient arrays instead of three. Every kernel evaluates it, the
Laplacian and the image through the same inline functions in the same order,
so recomputed fields and images are bitwise equal to stored ones.

The time loops release the GIL (``nogil``), so that a thread pool (the
``executor`` of :mod:`sensitivity.pde.fwi`) can run shots at the same time; a
single loop runs on one thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sensitivity.ad import nb_lanes as ln
from sensitivity.pde.points import inject, sample


@njit(cache=True, inline="always")
def _views(u, W, n):
    """The centre and the eight neighbours of the sweep's ``n`` values, as views."""
    k0 = 2 * W
    return (u[k0:k0 + n], u[k0 - W:], u[k0 + W:], u[k0 - 2 * W:], u[k0 + 2 * W:],
            u[k0 - 1:], u[k0 + 1:], u[k0 - 2:], u[k0 + 2:])  # fmt: skip


@njit(cache=True, inline="always")
def _coefs(cs):
    """The five distinct stencil weights: centre (x and z together), x +-1, x +-2, z +-1,
    z +-2, from ``cs`` = (c0_x, c1_x, c2_x, c0_z, c1_z, c2_z)."""
    return cs[0] + cs[3], cs[1], cs[2], cs[4], cs[5]


@njit(cache=True, inline="always")
def _lap9(c, x0, xm, xp, xmm, xpp, zm, zp, zmm, zpp):
    """4th-order Laplacian from the centre and its eight neighbours (floats or lanes);
    ``c`` from :func:`_coefs`."""
    return c[0] * x0 + c[1] * (xm + xp) + c[2] * (xmm + xpp) + c[3] * (zm + zp) + c[4] * (zmm + zpp)


@njit(cache=True, inline="always")
def _lap(v, k, cs):
    """4th-order Laplacian at sweep index ``k`` (``v``: the views of :func:`_views`)."""
    return _lap9(_coefs(cs), v[0][k], v[1][k], v[2][k], v[3][k], v[4][k], v[5][k], v[6][k],
                 v[7][k], v[8][k])  # fmt: skip


@njit(cache=True, inline="always")
def _lap_at(u, b, W, c):
    """4th-order Laplacian of the padded field ``u`` at ``u[b]`` (``b >= 2 W``)."""
    return _lap9(c, u[b], u[b - W], u[b + W], u[b - 2 * W], u[b + 2 * W], u[b - 1], u[b + 1],
                 u[b - 2], u[b + 2])  # fmt: skip


@njit(cache=True, inline="always")
def _lap_lanes(u, b, W, c):
    """:func:`_lap_at` at ``u[b:b+8]``, as lanes."""
    return _lap9(c, ln.load(u, b), ln.load(u, b - W), ln.load(u, b + W), ln.load(u, b - 2 * W),
                 ln.load(u, b + 2 * W), ln.load(u, b - 1), ln.load(u, b + 1), ln.load(u, b - 2),
                 ln.load(u, b + 2))  # fmt: skip


@njit(cache=True, inline="always")
def _new(a1, a2, al, ia, lap):
    """``alpha (u - u_) + u_ + A^{-1} L u`` at one node (see the module docstring)."""
    return al * (a1 - a2) + a2 + ia * lap


@njit(cache=True, inline="always")
def _image(a0, a1, a2, al):
    """``u^{n+1} - u^{n-1} - alpha (u^n - u^{n-1})`` at one node: ``A^{-1}(L u^n + S q^n)``
    by the scheme, the image of step n over ``A^{-1} m`` (see :mod:`sensitivity.pde.wave`)."""
    return (a0 - a2) - al * (a1 - a2)


@njit(cache=True, inline="always")
def _image_m(a0, a1, a2, sig, idt2, i2dt):
    """``(u^{n+1} - 2u^n + u^{n-1})/dt^2 + sig (u^{n+1} - u^{n-1})/(2 dt)``: the derivative of
    the scheme with respect to m, as the tangent-linear model forms it."""
    return (a0 - 2.0 * a1 + a2) * idt2 + sig * ((a0 - a2) * i2dt)


@njit(cache=True)
def step(u, up, un, al, ia, cs, W):
    """``un = A^{-1}[(C + L) u - B up]`` (``un`` distinct from ``u`` and ``up``)."""
    n = al.shape[0]
    v = _views(u, W, n)
    o, q = up[2 * W :], un[2 * W :]
    for k in range(n):
        q[k] = _new(v[0][k], o[k], al[k], ia[k], _lap(v, k, cs))


@njit(cache=True)
def step_inplace(u, up, al, ia, cs, W):
    """:func:`step` with the result written over ``up`` (the field it replaces)."""
    n = al.shape[0]
    v = _views(u, W, n)
    o = up[2 * W :]
    for k in range(n):
        o[k] = _new(v[0][k], o[k], al[k], ia[k], _lap(v, k, cs))


# Nodes ahead of the sweep at which the lanes kernels below ask for the lines of an
# image (32 lines each). On a Camembert shot, 128 to 2048 nodes ahead changed the
# forward pass with images by 0.6 ms and the reverse pass by 0.5 ms; 256 was best for both.
PREFETCH_AHEAD = 256


@njit(cache=True)
def step_image_inplace(u, up, al, ia, cs, W, D):
    """:func:`step_inplace`, and the image ``D`` (n,) of (u', u, up) while they are in registers.

    The store-all gradient writes one image per step, far more than the caches hold.
    A store to a line that is not in the cache waits for the line to come from memory;
    this sweep asks for each line of ``D`` ``PREFETCH_AHEAD`` nodes before it writes
    there, so that the transfer overlaps the stencil's arithmetic. LLVM does not
    vectorise a loop that prefetches, so the sweep is written in lanes of eight
    (:mod:`sensitivity.ad.nb_lanes`), indexed from the padded fields themselves:
    one base pointer for the centre and its four neighbours along z leaves the
    compiler registers enough for the loop's nine streams (with the nine views of
    :func:`_views` it spilled three to the stack, and took 16.2 instead of 13.4 ms
    for the steps of a Camembert shot). On the forward pass of that shot, with
    the steps alone at 13.5 ms, the images cost 4.1 ms this way, 5.6 ms with
    non-temporal stores, and 8.3 ms with plain stores. Per node the operations and
    their order are those of :func:`step_inplace` and :func:`_image`.
    """
    n = al.shape[0]
    whole = n - n % ln.LANES
    s, c = 2 * W, _coefs(cs)
    for k in range(0, whole, ln.LANES):
        ln.prefetch_write(D, k + PREFETCH_AHEAD)
        b = s + k
        a1, a2, alk = ln.load(u, b), ln.load(up, b), ln.load(al, k)
        a0 = _new(a1, a2, alk, ln.load(ia, k), _lap_lanes(u, b, W, c))
        ln.store(up, b, a0)
        ln.store(D, k, _image(a0, a1, a2, alk))
    for k in range(whole, n):
        b = s + k
        a1, a2 = u[b], up[b]
        a0 = _new(a1, a2, al[k], ia[k], _lap_at(u, b, W, c))
        up[b] = a0
        D[k] = _image(a0, a1, a2, al[k])


@njit(cache=True)
def step_image_pair(m1, m2, al, ia, cs, W, D1, D0, g):
    """``g -= mu^{n+2} D1``, then ``g -= mu^{n+1} D0``, and the adjoint step, in one sweep.

    ``m1`` holds mu^{n+1}, ``m2`` mu^{n+2}, which the step overwrites with mu^n
    (:func:`step_inplace`); ``D1``, ``D0`` (>= n) are the stored images of steps n + 1
    and n. The images come from memory: this sweep asks for them ``PREFETCH_AHEAD``
    nodes ahead, so that their transfer overlaps the stencil's arithmetic, in lanes
    as :func:`step_image_inplace`. The reverse pass of a Camembert shot took 19.7 ms
    this way (its forward modelling: 14.0 ms), 23.7-24.3 ms with a separate pass
    for the images. Per node the operations and their order are those of the
    scalar kernels, so the results are bitwise theirs.
    """
    n = al.shape[0]
    whole = n - n % ln.LANES
    s, c = 2 * W, _coefs(cs)
    for k in range(0, whole, ln.LANES):
        if k + PREFETCH_AHEAD < whole:
            ln.prefetch(D1, k + PREFETCH_AHEAD)
            ln.prefetch(D0, k + PREFETCH_AHEAD)
        b = s + k
        a1, a2 = ln.load(m1, b), ln.load(m2, b)
        ln.store(g, k, (ln.load(g, k) - a2 * ln.load(D1, k)) - a1 * ln.load(D0, k))
        ln.store(m2, b, _new(a1, a2, ln.load(al, k), ln.load(ia, k), _lap_lanes(m1, b, W, c)))
    for k in range(whole, n):
        b = s + k
        a1, a2 = m1[b], m2[b]
        g[k] = (g[k] - a2 * D1[k]) - a1 * D0[k]
        m2[b] = _new(a1, a2, al[k], ia[k], _lap_at(m1, b, W, c))


@njit(cache=True)
def image_one(m1, W, D, g):
    """``g -= mu^{n+1} D^n`` (``m1`` holds mu^{n+1})."""
    n = g.shape[0]
    mu = m1[2 * W : 2 * W + n]
    for k in range(n):
        g[k] -= mu[k] * D[k]


@njit(cache=True)
def adjoint_image_fields(m1, m2, al, ia, cs, W, un, u, up, g):
    """``g -= mu^{n+1} D^n`` with the image formed from the fields u^{n+1}, u^n, u^{n-1},
    then ``mu^n`` (the adjoint step) written over ``m2``, in one sweep."""
    n = al.shape[0]
    v = _views(m1, W, n)
    o = m2[2 * W :]
    a, b, c = un[2 * W :], u[2 * W :], up[2 * W :]
    for k in range(n):
        mu = v[0][k]
        g[k] -= mu * _image(a[k], b[k], c[k], al[k])
        o[k] = _new(mu, o[k], al[k], ia[k], _lap(v, k, cs))


@njit(cache=True, nogil=True)
def forward_loop(nt, al, ia, iau, cs, W, sidx, sw, q, ridx, rw, data, ustore):
    """Time loop; ``ustore`` (nt, nx, nz) gets u^n (length 0: not stored)."""
    nx, nz = iau.shape
    pad = (nx + 4, W)
    up, u = np.zeros(pad[0] * W), np.zeros(pad[0] * W)
    for n in range(nt):
        u2 = u.reshape(pad)
        sample(u2, ridx, rw, data[n])
        if ustore.shape[0] > 0:
            for i in range(nx):  # explicit loops: slice assignment is slow to compile
                for j in range(nz):
                    ustore[n, i, j] = u2[i + 2, j + 2]
        if n == nt - 1:
            break
        step_inplace(u, up, al, ia, cs, W)
        inject(up.reshape(pad), sidx, sw, q[n], iau, 2)
        up, u = u, up


@njit(cache=True, nogil=True)
def forward_loop_images(nt, al, ia, iau, cs, W, sidx, sw, q, ridx, rw, data, store, work):
    """Time loop storing the image ``D^n`` of every step n < nt - 1 in ``store`` (nt - 1, >= n)
    (:func:`step_image_inplace`).

    The reverse pass then reads one stored field per step instead of three (the
    store-all gradient is bound by memory traffic). The image is formed in the
    step's sweep and corrected at the source nodes after the injection. ``work``
    (2, padded size) holds u^n and u^{n-1} (overwritten by u^{n+1}).
    """
    nx = iau.shape[0]
    pad = (nx + 4, W)
    u, up = work[0], work[1]
    u[:] = 0.0
    up[:] = 0.0
    kept = np.empty(sidx.shape[:2])  # u^{n-1} at the source nodes, overwritten by the step
    for n in range(nt):
        sample(u.reshape(pad), ridx, rw, data[n])
        if n == nt - 1:
            break
        for p in range(sidx.shape[0]):
            for k in range(4):
                kept[p, k] = up[(sidx[p, k, 0] + 2) * W + sidx[p, k, 1] + 2]
        D = store[n]
        step_image_inplace(u, up, al, ia, cs, W, D)
        inject(up.reshape(pad), sidx, sw, q[n], iau, 2)
        for p in range(sidx.shape[0]):  # the injected nodes changed after their image
            for k in range(4):
                t = sidx[p, k, 0] * W + sidx[p, k, 1] + 2  # sweep index; padded: t + 2W
                D[t] = _image(up[t + 2 * W], u[t + 2 * W], kept[p, k], al[t])
        up, u = u, up


@njit(cache=True, nogil=True)
def adjoint_loop_stored(nt, al, ia, iau, cs, W, ridx, rw, r, store, mu, g):
    """Reverse time loop with the stored images ``store`` (nt - 1, >= n); ``mu`` (2, padded).

    The imaging terms ``g -= mu^{n+1} D^n`` (n = nt-2 ... 0) are added two at a time,
    (n + 1, n) in the sweep of step n, while the field that the step overwrites still
    holds mu^{n+2} (:func:`step_image_pair`): with its working set beyond the L2
    cache, each pass over ``g`` costs a read and a write from L3, and one term per
    step made the reverse pass of a Camembert shot 24.8 instead of 22.0 ms. Per node
    the operations and their order are those of one term per step, so the gradient
    is bitwise that of the checkpointed path.
    """
    nx = iau.shape[0]
    pad = (nx + 4, W)
    m1, m2 = mu[0], mu[1]  # mu^{n+1}, mu^{n+2}; the step writes mu^n over mu^{n+2}
    m1[:] = 0.0
    m2[:] = 0.0
    for n in range(nt - 1, -1, -1):
        if n <= nt - 3 and (nt - 3 - n) % 2 == 0:
            step_image_pair(m1, m2, al, ia, cs, W, store[n + 1], store[n], g)
        else:
            if n == 0:  # an odd number of images: the last one alone
                image_one(m1, W, store[0], g)
            step_inplace(m1, m2, al, ia, cs, W)
        inject(m2.reshape(pad), ridx, rw, r[n], iau, 2)
        m1, m2 = m2, m1


@njit(cache=True, nogil=True)
def adjoint_source_loop(nt, al, ia, iau, cs, W, sidx, sw, ridx, rw, r, qbar):
    """Reverse loop of the modelling operator's transpose: ``qbar[n] = S^T mu^{n+1}``."""
    nx = iau.shape[0]
    pad = (nx + 4, W)
    m1, m2 = np.zeros(pad[0] * W), np.zeros(pad[0] * W)
    for n in range(nt - 1, -1, -1):
        sample(m1.reshape(pad), sidx, sw, qbar[n])
        step_inplace(m1, m2, al, ia, cs, W)
        inject(m2.reshape(pad), ridx, rw, r[n], iau, 2)
        m1, m2 = m2, m1


@njit(cache=True, nogil=True)
def born_loop(nt, al, ia, iau, cs, W, sidx, sw, q, ridx, rw, dm, sig, idt2, i2dt, data, ddata):
    """Tangent-linear model: ``A du^{n+1} = (C + L) du^n - B du^{n-1} - dm dG^n/dm``
    with ``dG^n/dm`` the image (``dm`` flat, on the sweep's n values)."""
    nx = iau.shape[0]
    pad = (nx + 4, W)
    size = pad[0] * W
    up, u, un = np.zeros(size), np.zeros(size), np.zeros(size)
    dup, du, dun = np.zeros(size), np.zeros(size), np.zeros(size)
    for n in range(nt):
        sample(u.reshape(pad), ridx, rw, data[n])
        sample(du.reshape(pad), ridx, rw, ddata[n])
        if n == nt - 1:
            break
        step(u, up, un, al, ia, cs, W)
        inject(un.reshape(pad), sidx, sw, q[n], iau, 2)
        step(du, dup, dun, al, ia, cs, W)
        a, b, c, d = un[2 * W :], u[2 * W :], up[2 * W :], dun[2 * W :]
        for k in range(al.shape[0]):
            d[k] -= ia[k] * (dm[k] * _image_m(a[k], b[k], c[k], sig[k], idt2, i2dt))
        up, u, un = u, un, up
        dup, du, dun = du, dun, dup


# Action codes of the compiled schedule runner: the order of checkpoint.ACTION_KINDS.
STORE, RESTORE, FREE, ADVANCE, REVERSE = 0, 1, 2, 3, 4


@njit(cache=True)
def _free_field(ref):
    for k in range(ref.shape[0]):
        if ref[k] == 0:
            return k
    raise RuntimeError("checkpointed gradient: the field pool is exhausted")


@njit(cache=True, nogil=True)
def run_checkpointed(acts, nt, al, ia, iau, cs, W, sidx, sw, q, ridx, rw, d_obs, given, r,
                     pool, mu, g):  # fmt: skip
    """Execute a checkpoint schedule (actions coded (kind, i, j)) in one compiled call.

    States ``x_n = (u^n, u^{n-1})`` are pairs of indices into ``pool`` (fields,
    zero-initialised; ``2 s + 4`` suffice for ``s`` snapshots), with reference
    counts: storing or restoring a state copies two indices, never a field, and
    a step writes over u^{n-1} when only the current state holds it, else into a
    field nothing references. Reversing step ``n`` needs
    u^{n+1} too: the first field of the previously reversed state, kept
    referenced. ``mu`` (2, padded) holds mu^{n+1} and mu^{n+2}. Fills the
    residual ``r`` and ``g`` (``-sum mu^{n+1} D^n``); returns (steps advanced, peak
    number of snapshots).
    """
    nx = iau.shape[0]
    pad = (nx + 4, W)
    ref = np.zeros(pool.shape[0], dtype=np.int64)
    ck = np.full((nt, 2), -1, dtype=np.int64)
    iu, iup, kept = 0, 0, -1  # x_0 = (0, 0): the zero field 0, twice
    d = np.empty(r.shape[1])  # data of the reversed step
    ref[0] = 2
    m1, m2 = mu[0], mu[1]
    m1[:] = 0.0
    m2[:] = 0.0
    alive, peak, fwd = 0, 0, 0
    for a in range(acts.shape[0]):
        kind, i, j = acts[a, 0], acts[a, 1], acts[a, 2]
        if kind == ADVANCE:
            for n in range(i, j):
                if ref[iup] == 1 and iup != iu:  # u^{n-1} is the current state's alone
                    k = iup
                    step_inplace(pool[iu], pool[k], al, ia, cs, W)
                else:
                    k = _free_field(ref)
                    step(pool[iu], pool[iup], pool[k], al, ia, cs, W)
                    ref[k] += 1
                    ref[iup] -= 1
                inject(pool[k].reshape(pad), sidx, sw, q[n], iau, 2)
                iup, iu = iu, k
            fwd += j - i
        elif kind == STORE:
            ck[i, 0], ck[i, 1] = iu, iup
            ref[iu] += 1
            ref[iup] += 1
            alive += 1
            peak = max(peak, alive)
        elif kind == RESTORE:
            ref[iu] -= 1
            ref[iup] -= 1
            iu, iup = ck[i, 0], ck[i, 1]
            ref[iu] += 1
            ref[iup] += 1
        elif kind == FREE:
            ref[ck[i, 0]] -= 1
            ref[ck[i, 1]] -= 1
            ck[i, 0], ck[i, 1] = -1, -1
            alive -= 1
        else:  # reverse step i with x_i current and u^{i+1} kept
            sample(pool[iu].reshape(pad), ridx, rw, d)
            for p in range(r.shape[1]):
                r[i, p] = d[p] - d_obs[i, p] if given.shape[0] == 0 else given[i, p]
            if i < nt - 1:
                adjoint_image_fields(m1, m2, al, ia, cs, W, pool[kept], pool[iu], pool[iup], g)
            else:  # mu^{nt} = 0: no imaging term
                step_inplace(m1, m2, al, ia, cs, W)
            inject(m2.reshape(pad), ridx, rw, r[i], iau, 2)
            m1, m2 = m2, m1
            if kept >= 0:
                ref[kept] -= 1
            kept = iu
            ref[kept] += 1
    return fwd, peak
