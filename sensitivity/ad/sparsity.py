"""Sparsity patterns and column colouring: sparse Jacobians in few dual sweeps.

Curtis-Powell-Reid compression [1]_: two columns of ``J`` that share no row may
be summed into one seed direction, because every row then sees at most one of
them. A colouring of the columns with that property (a distance-1 colouring of
the column intersection graph ``S^T S``) lets one forward sweep with K = number
of colours recover every nonzero: ``J[i, j] = (J E)[i, colour[j]]``. A
tridiagonal pattern needs 3 colours whatever its size, a 2-D 5-point stencil 5.

The colouring is greedy over the columns in natural order (first-fit), then
retried in largest-degree-first order, keeping the better of the two. Cost:
O(sum over rows of (nonzeros per row)^2).

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
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

__all__ = ["as_pattern", "color_columns", "colouring_is_valid", "detect_sparsity"]


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
    S.data = np.ones_like(S.data)
    S.eliminate_zeros()
    S.sum_duplicates()
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


def color_columns(S):
    """Colour the columns of a sparsity pattern so no two of a colour share a row.

    Parameters
    ----------
    S : scipy.sparse matrix, shape (n, m)

    Returns
    -------
    colors : ndarray of int64, shape (m,)
        Colour of every column, 0 ... ncolors-1.
    ncolors : int
    """
    S = sp.csr_matrix(S)
    C = S.tocsc()
    indptr = S.indptr.astype(np.int64)
    indices = S.indices.astype(np.int64)
    cptr = C.indptr.astype(np.int64)
    crows = C.indices.astype(np.int64)
    m = S.shape[1]
    if m == 0:
        return np.zeros(0, dtype=np.int64), 0
    best = _greedy(indptr, indices, cptr, crows, np.arange(m, dtype=np.int64))
    degree = np.diff(cptr)
    by_degree = np.argsort(-degree, kind="stable").astype(np.int64)
    other = _greedy(indptr, indices, cptr, crows, by_degree)
    if other[1] < best[1]:
        best = other
    return best[0], int(best[1])


def colouring_is_valid(S, colors):
    """Return True if no two columns of one colour share a row of ``S``."""
    S = sp.csr_matrix(S)
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
