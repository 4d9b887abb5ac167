"""Sparsity patterns and column colouring: sparse Jacobians in few dual sweeps.

Curtis-Powell-Reid compression [1]_: two columns of ``J`` that share no row may
be summed into one seed direction, because every row then sees at most one of
them. A colouring of the columns with that property (a distance-1 colouring of
the column intersection graph ``S^T S``) lets one forward sweep with K = number
of colours recover every nonzero: ``J[i, j] = (J E)[i, colour[j]]``. A
tridiagonal pattern needs 3 colours whatever its size, a 2-D 5-point stencil 5.

The colouring is greedy (first-fit) over the columns in natural and in
largest-degree-first order, keeping the better, then improved by a few rounds
of Culberson's iterated greedy (recolour class by class, largest colour
first), which never increases the count. Cost per round: O(sum over rows of
(nonzeros per row)^2). When that count is above the largest row's (a lower
bound), DSATUR [2]_ is tried as well and kept if it needs fewer colours: on a
2-D 5-point stencil greedy orders need 6-7 colours, DSATUR finds the optimal 5.
It picks each next column from a binary heap with lazy deletion, O(E log m) for E
colour updates (0.7 s for the whole colouring of a 700 x 700 grid, 4.9e5
columns), where a scan per column took 1.2 s at 4.8e4 columns and grew as m^2.

Detection (:func:`detect_sparsity`): the Jacobian is evaluated exactly with
dual sweeps, in column chunks of K, at ``npoints`` random points near the
given state and parameters, and the union of the nonzero entries is the
pattern. Cost: ``npoints * ceil(ncols / K)`` dual sweeps of the right-hand side
(with K = 8 about ``npoints * ncols / 8 * (4 ... 6)`` float evaluations) and
O(n * K) memory (never a dense n x n array). Limit: an entry that happens to be
zero at every sampled point (a branch not taken, an exactly cancelling term)
is missed; pass the pattern yourself (``jac_sparsity=``) when you know it.

References
----------
.. [1] A. R. Curtis, M. J. D. Powell, J. K. Reid, "On the estimation of sparse
   Jacobian matrices", IMA J. Appl. Math. 13 (1974) 117-119.
.. [2] D. Brelaz, "New methods to color the vertices of a graph", Comm. ACM 22
   (1979) 251-256.
"""

from __future__ import annotations

import numba
import numpy as np

from sensitivity._lazy import LazyModule
from sensitivity._memory import aligned_array

sp = LazyModule("scipy.sparse")

__all__ = ["as_pattern", "color_columns", "colouring_is_valid", "compression", "detect_sparsity"]

ITERATED_GREEDY_ROUNDS = 8  # recolouring passes after the first greedy colouring


def as_pattern(S, shape, name="jac_sparsity"):
    """Return ``S`` (array_like or scipy.sparse) as a CSR 0/1 pattern of ``shape``.

    Raises
    ------
    ValueError
        If the shape differs from ``shape``.
    """
    S = sp.csr_matrix(S, dtype=float) if not sp.issparse(S) else sp.csr_matrix(S)
    if S.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {S.shape}")
    S = S.copy()
    S.sum_duplicates()
    S.data = (S.data != 0).astype(float)  # explicit zeros are not structural nonzeros
    S.eliminate_zeros()
    S.sort_indices()
    S.data[:] = 1.0
    return S


@numba.njit(cache=True)
def _greedy(indptr, indices, cptr, crows, order):
    # indptr/indices: CSR (rows -> columns); cptr/crows: CSC (columns -> rows).
    ncols = cptr.shape[0] - 1
    colors = -np.ones(ncols, dtype=np.int64)
    mark = -np.ones(ncols + 1, dtype=np.int64)  # mark[c] == j: colour c is taken near j
    ncolors = 0
    for j in order:
        for q in range(cptr[j], cptr[j + 1]):
            i = crows[q]
            for k in range(indptr[i], indptr[i + 1]):
                c = colors[indices[k]]
                if c >= 0:
                    mark[c] = j
        c = 0
        while mark[c] == j:
            c += 1
        colors[j] = c
        if c + 1 > ncolors:
            ncolors = c + 1
    return colors, ncolors


@numba.njit(cache=True)
def _before(h, a, b):
    # heap entry a before b: more colours among the neighbours, then more row entries,
    # then the lower column (the order of a scan for the first maximum)
    if h[a, 0] != h[b, 0]:
        return h[a, 0] > h[b, 0]
    if h[a, 1] != h[b, 1]:
        return h[a, 1] > h[b, 1]
    return h[a, 2] < h[b, 2]


@numba.njit(cache=True)
def _push(h, size, sat, deg, j):
    """Add (sat, deg, j) to the binary heap ``h[:size]``; return the heap (grown if full)."""
    if size == h.shape[0]:
        grown = np.empty((2 * size, 3), dtype=np.int64)
        grown[:size] = h
        h = grown
    h[size, 0], h[size, 1], h[size, 2] = sat, deg, j
    i = size
    while i > 0:
        up = (i - 1) // 2
        if not _before(h, i, up):
            break
        for c in range(3):
            h[i, c], h[up, c] = h[up, c], h[i, c]
        i = up
    return h


@numba.njit(cache=True)
def _pop(h, size):
    """Remove the first entry of ``h[:size]`` (it moves to ``h[size - 1]``)."""
    last = size - 1
    for c in range(3):
        h[0, c], h[last, c] = h[last, c], h[0, c]
    i = 0
    while True:
        first, left = i, 2 * i + 1
        if left < last and _before(h, left, first):
            first = left
        if left + 1 < last and _before(h, left + 1, first):
            first = left + 1
        if first == i:
            return
        for c in range(3):
            h[i, c], h[first, c] = h[first, c], h[i, c]
        i = first


@numba.njit(cache=True)
def _dsatur(indptr, indices, cptr, crows, maxc):
    # Brelaz's DSATUR: colour next the column whose neighbours already use the most
    # colours (ties: most row entries, then the lowest column). Returns ncolors = -1
    # past maxc (<= 64) colours. The next column comes from a binary heap with lazy
    # deletion (an entry is stale once its column is coloured or gains a colour), so a
    # grid of 10^6 columns takes seconds instead of the hours of a scan per column.
    m = cptr.shape[0] - 1
    colors = -np.ones(m, dtype=np.int64)
    seen = np.zeros(m, dtype=np.uint64)  # bit c: a neighbour has colour c
    sat = np.zeros(m, dtype=np.int64)
    deg = np.zeros(m, dtype=np.int64)
    h = np.empty((2 * m + 16, 3), dtype=np.int64)
    size = 0
    for j in range(m):
        for q in range(cptr[j], cptr[j + 1]):
            deg[j] += indptr[crows[q] + 1] - indptr[crows[q]]
        h = _push(h, size, 0, deg[j], j)
        size += 1
    ncolors = 0
    for _ in range(m):
        best = -1
        while best < 0:
            _pop(h, size)
            size -= 1
            j = h[size, 2]
            if colors[j] < 0 and sat[j] == h[size, 0]:
                best = j
        c = 0
        while c < maxc and seen[best] & (np.uint64(1) << np.uint64(c)):
            c += 1
        if c >= maxc:
            return colors, -1
        colors[best] = c
        ncolors = max(ncolors, c + 1)
        bit = np.uint64(1) << np.uint64(c)
        for q in range(cptr[best], cptr[best + 1]):
            i = crows[q]
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                if not seen[j] & bit:
                    seen[j] |= bit
                    sat[j] += 1
                    if colors[j] < 0:
                        h = _push(h, size, sat[j], deg[j], j)
                        size += 1
    return colors, ncolors


def color_columns(S):
    """Colour the columns of a sparsity pattern so no two of a colour share a row.

    Parameters
    ----------
    S : scipy.sparse matrix or array_like, shape (n, m)

    Returns
    -------
    colors : ndarray of int64, shape (m,)
        Colour of every column, 0 ... ncolors-1.
    ncolors : int
    """
    S = sp.csr_matrix(S) if sp.issparse(S) else sp.csr_matrix(np.asarray(S, dtype=float))
    S = as_pattern(S, S.shape)  # explicit zeros are not structural nonzeros
    C = S.tocsc()
    a = (
        S.indptr.astype(np.int64),
        S.indices.astype(np.int64),
        C.indptr.astype(np.int64),
        C.indices.astype(np.int64),
    )
    m = S.shape[1]
    if m == 0:
        return np.zeros(0, dtype=np.int64), 0
    degree = np.diff(C.indptr)
    orders = (np.arange(m), np.argsort(-degree, kind="stable"))
    best = min((_greedy(*a, o.astype(np.int64)) for o in orders), key=lambda r: r[1])
    for _ in range(ITERATED_GREEDY_ROUNDS):
        # Culberson's iterated greedy: revisiting whole colour classes (largest
        # colour first) never needs more colours and often needs fewer.
        order = np.argsort(-best[0], kind="stable").astype(np.int64)
        new = _greedy(*a, order)
        if new[1] > best[1]:
            break
        best = new
    lower = int(np.diff(S.indptr).max()) if S.nnz else 0  # a row's columns all differ
    if best[1] > lower:
        ds = _dsatur(*a, min(best[1], 64))
        if 0 < ds[1] < best[1]:
            best = ds
    return best[0], int(best[1])


def compression(S, colors, ncolors, K):
    """Seed directions and gather positions of a Curtis-Powell-Reid compression.

    Parameters
    ----------
    S : scipy.sparse.csr_matrix, shape (n, m)
        The pattern (sorted, as from :func:`as_pattern`).
    colors : ndarray of int, shape (m,)
    ncolors : int
    K : int
        Colours per dual sweep.

    Returns
    -------
    seeds : ndarray, shape (ceil(ncolors / K), m, K)
        ``seeds[c, j, colors[j] - c K] = 1`` for the columns of sweep ``c``; the
        array starts on a 64-byte cache line.
    pos : ndarray of int64, shape (nnz,)
        Flat index of stored entry ``k = (i, j)`` in the stacked sweep results
        (shape (nchunk, n, K)): ``(colors[j] // K * n + i) * K + colors[j] % K``.
    """
    n, m = S.shape
    nchunk = max(1, -(-ncolors // K))
    # rows of K = 4 partials straddling two cache lines made a dual sweep reading them
    # 15-20 % slower (benchmarks/nb_duals.py, sparse Jacobian, issue 3)
    seeds = aligned_array((nchunk, m, K), zeros=True)
    seeds[colors // K, np.arange(m), colors % K] = 1.0
    rows = np.repeat(np.arange(n), np.diff(S.indptr))
    c = colors[S.indices]
    pos = ((c // K) * n + rows) * K + c % K
    return seeds, pos.astype(np.int64)


# colour_runs's answer for "keep the pattern's order": no permutation, runs or loose entries
NO_RUNS = (None, np.zeros((0, 4), np.int64), np.zeros(0, np.int64))


def colour_runs(S, colors, ncolors, K):
    """Order each row's entries by colour, and find the rows that then need no gather.

    After the reordering, a row whose colours are 0 ... w-1 holds the first w
    partials of its row of the one-sweep compressed Jacobian, in order: such
    rows, in runs of equal w, are copied without a gather
    (:func:`sensitivity.ad.nb.assembler`). A tridiagonal pattern has runs
    covering all its rows but the last, a 2-D 5-point one most interior rows.

    Parameters
    ----------
    S : scipy.sparse.csr_matrix, shape (n, m)
        The pattern (sorted, as from :func:`as_pattern`).
    colors : ndarray of int, shape (m,)
    ncolors, K : int
        Number of colours and partials per sweep.

    Returns
    -------
    perm : ndarray of int64, shape (nnz,) or None
        Entry ``k`` of the reordered pattern is entry ``perm[k]`` of ``S``.
        None (and no runs) when the colours need more than one sweep or no row
        qualifies: keep ``S``'s order.
    runs : ndarray of int64, shape (nruns, 4)
        ``(i0, i1, a, w)``: rows i0 ... i1-1 hold w entries each, from position a
        of the reordered values. A row qualifies only if its copy of K values
        stays inside the ``nnz`` stored values.
    loose : ndarray of int64
        Positions (reordered) of the entries of the other rows.
    """
    nnz = S.nnz
    if nnz == 0 or ncolors > K:
        return NO_RUNS
    n, indptr = S.shape[0], S.indptr.astype(np.int64)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    c = colors[S.indices]
    perm = np.lexsort((c, rows)).astype(np.int64)  # by row, then colour
    count = np.diff(indptr)
    top = np.full(n, -1)
    np.maximum.at(top, rows, c)
    # colours in a row differ (a valid colouring): 0 ... w-1 iff the largest is w - 1
    full = (count > 0) & (top == count - 1) & (indptr[:-1] + K <= nnz)
    r = np.flatnonzero(full)
    if r.size == 0:
        return NO_RUNS
    cut = np.flatnonzero((np.diff(r) != 1) | (np.diff(count[r]) != 0)) + 1
    first, last = r[np.r_[0, cut]], r[np.r_[cut - 1, r.size - 1]]
    runs = np.stack([first, last + 1, indptr[first], count[first]], axis=1).astype(np.int64)
    loose = np.flatnonzero(~full[rows]).astype(np.int64)  # rows is sorted: same in both orders
    return perm, runs, loose


def colouring_is_valid(S, colors):
    """Return True if no two columns of one colour share a row of ``S``."""
    S = sp.csr_matrix(S) if sp.issparse(S) else sp.csr_matrix(np.asarray(S, dtype=float))
    S = as_pattern(S, S.shape)
    for i in range(S.shape[0]):
        cols = S.indices[S.indptr[i] : S.indptr[i + 1]]
        c = colors[cols]
        if np.unique(c).size != c.size:
            return False
    return True


def detect_sparsity(cols_kernel, n, ncols, K, t, y, p, vary, npoints=2, seed=0):
    """Detect a Jacobian's sparsity pattern by exact dual sweeps at random points.

    Parameters
    ----------
    cols_kernel : callable
        ``cols_kernel(t, y, p, c0, E)`` fills ``E`` (n, K) with columns
        ``c0 ... c0+K-1`` of the Jacobian (``jac_cols`` of :mod:`.nb`).
    n, ncols : int
        Rows (state size) and columns of the Jacobian.
    K : int
        Columns per sweep (the kernel's chunk size).
    t : float
    y : ndarray, shape (n,)
    p : ndarray, shape (m,)
    vary : {"y", "p"}
        Unused by the sampling (both y and p are perturbed); kept for messages.
    npoints : int
        Random points; the pattern is the union of their nonzeros.
    seed : int
        Seed of the perturbations (the detection is reproducible).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n, ncols)
        The 0/1 pattern.
    """
    rng = np.random.default_rng(seed)
    E = np.empty((n, K))
    rows, cols = [], []
    for _ in range(npoints):
        yk = y + 0.1 * (np.abs(y) + 1.0) * rng.uniform(-1.0, 1.0, y.shape)
        pk = p + 0.1 * (np.abs(p) + 1.0) * rng.uniform(-1.0, 1.0, p.shape)
        for c0 in range(0, ncols, K):
            cols_kernel(t, yk, pk, c0, E)
            i, j = np.nonzero(E)
            rows.append(i)
            cols.append(j + c0)
    rows = np.concatenate(rows) if rows else np.zeros(0, int)
    cols = np.concatenate(cols) if cols else np.zeros(0, int)
    S = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, ncols))
    return as_pattern(S, (n, ncols), f"detected pattern of d f / d {vary}")
