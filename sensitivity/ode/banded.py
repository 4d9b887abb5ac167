"""Banded linear algebra of the compiled stiff kernels: Jacobian, LU and solves.

A matrix ``A`` (n, n) with lower and upper bandwidths ``kl`` and ``ku`` (``A[i, j] = 0``
unless ``-kl <= j - i <= ku``) lives in two storages, w = kl + ku + 1:

* the Jacobian storage ``J`` (n, w), row by row as the dual sweeps produce it:
  ``J[i, j % w] = A[i, j]`` for the columns j of row i's band. A column colouring by
  ``j % w`` is valid for any such pattern (two columns of one colour lie w apart, further
  than one row's band reaches), so ``ceil(w / K)`` dual sweeps of f give all of J;
* the LU storage ``M`` (n, 2 kl + ku + 1), LAPACK's band storage transposed so that a
  column is a contiguous row of ``M``: ``M[j, kv + i - j] = A[i, j]``, kv = kl + ku; the
  first kl entries of each column take the fill-in of the row interchanges. After the
  factorisation ``M[j, kv]`` holds ``1 / U[j, j]`` (LAPACK keeps ``U[j, j]``).

:func:`band_factor` is Gaussian elimination with partial pivoting for band matrices
(Golub & Van Loan, 4th ed., section 4.3.5; the column order of LAPACK ``dgbtf2``): U has
upper bandwidth kl + ku, L keeps kl multipliers per column, O(n kl (kl + ku)) flops.
:func:`band_solve` applies the row interchanges and L column by column, then solves with U.

References
----------
.. [1] G. H. Golub, C. F. Van Loan, "Matrix Computations", 4th ed., Johns Hopkins (2013),
   section 4.3 (banded systems).
.. [2] E. Anderson et al., "LAPACK Users' Guide", 3rd ed., SIAM (1999): band storage.
"""

from __future__ import annotations

import numpy as np

from sensitivity._lazy import LazyModule
from sensitivity.ode.control import jit

sp = LazyModule("scipy.sparse")

# make_kernel template globals, bound per problem (declared for linters; never used here)
rhs = None
K = 0
dual_array_k = None
empty_dual = None


def bandwidths(pattern):
    """Return ``(kl, ku)`` of a sparsity ``pattern`` (array_like or scipy.sparse, (n, n))."""
    A = sp.coo_matrix(pattern)
    kl = int(max((A.row - A.col).max(initial=0), 0))
    ku = int(max((A.col - A.row).max(initial=0), 0))
    return kl, ku


def band_jac_template(t, y, p, J):
    """Template of the banded Jacobian kernel (:func:`sensitivity.ad.nb.make_kernel`).

    Fills the Jacobian storage ``J`` (n, w) of df/dy at (t, y) with ``ceil(w / K)`` dual
    sweeps of f, seeding column j in partial ``j % w`` (see the module docstring).
    """
    n = y.shape[0]
    w = J.shape[1]
    E = np.zeros((n, K))
    for c0 in range(0, w, K):
        wd = min(K, w - c0)
        cj = 0  # j % w, without an integer division per column
        for j in range(n):
            for k in range(K):
                E[j, k] = 1.0 if k == cj - c0 else 0.0
            cj = cj + 1 if cj + 1 < w else 0
        yd = dual_array_k(y, E, 0, K)
        out = empty_dual(yd, n)
        rhs(t, yd, p, out)
        oe = out.eps
        for i in range(n):
            for k in range(wd):
                J[i, c0 + k] = oe[i, k]


@jit()
def band_from_dense(A, J, kl, ku):
    """Copy the band of the dense ``A`` (n, n) into the Jacobian storage ``J`` (n, w)."""
    n = A.shape[0]
    w = kl + ku + 1
    for i in range(n):
        for j in range(max(0, i - kl), min(n, i + ku + 1)):
            J[i, j % w] = A[i, j]


@jit()
def band_factor(J, c, M, kl, ku, piv):
    """Factor ``I - c A`` (A in Jacobian storage ``J``) into the LU storage ``M``.

    Partial pivoting; ``piv[j]`` is the row swapped with row j at elimination step j.
    ``M[j, kv]`` keeps the reciprocal of U's diagonal entry (the solves multiply: a
    division on the sequential path of the triangular solve costs several times more).
    A zero pivot gives an infinite reciprocal (the solves then produce non-finite values,
    which the Newton iterations treat as a failure).
    """
    n = M.shape[0]
    ld = M.shape[1]
    w = kl + ku + 1
    kv = kl + ku
    cj = 0  # j % w
    for j in range(n):  # column j of I - c A, rows j - ku ... j + kl
        for r in range(ld):
            M[j, r] = 0.0
        for i in range(max(0, j - ku), min(n, j + kl + 1)):
            M[j, kv + i - j] = -c * J[i, cj]
        M[j, kv] += 1.0
        cj = cj + 1 if cj + 1 < w else 0
    ju = 0  # last column that the row interchanges so far reach
    for j in range(n):
        km = min(kl, n - 1 - j)
        jp = 0
        big = abs(M[j, kv])
        for i in range(1, km + 1):
            if abs(M[j, kv + i]) > big:
                big = abs(M[j, kv + i])
                jp = i
        piv[j] = j + jp
        if M[j, kv + jp] == 0.0:
            M[j, kv] = np.inf
            continue
        ju = max(ju, min(j + ku + jp, n - 1))
        if jp != 0:  # swap rows j and j + jp in columns j ... ju
            for col in range(j, ju + 1):
                a = kv + j - col
                M[col, a], M[col, a + jp] = M[col, a + jp], M[col, a]
        inv = 1.0 / M[j, kv]
        M[j, kv] = inv  # U_jj is read only by the solves from here on
        if km > 0:
            for i in range(1, km + 1):
                M[j, kv + i] *= inv
            for col in range(j + 1, ju + 1):
                a = kv + j - col  # row j of column col
                u = M[col, a]
                if u != 0.0:
                    for i in range(1, km + 1):
                        M[col, a + i] -= M[j, kv + i] * u


@jit()
def band_solve(M, kl, ku, piv, b, x):
    """Solve ``(I - c A) x = b`` with the factors of :func:`band_factor` (x may alias b)."""
    n = b.shape[0]
    kv = kl + ku
    for i in range(n):
        x[i] = b[i]
    if kl > 0:  # L^-1 P, one column at a time (the interchanges interleave with L)
        for j in range(n - 1):
            lm = min(kl, n - 1 - j)
            pj = piv[j]
            if pj != j:
                x[j], x[pj] = x[pj], x[j]
            xj = x[j]
            if xj != 0.0:
                for i in range(1, lm + 1):
                    x[j + i] -= M[j, kv + i] * xj
    for j in range(n - 1, -1, -1):  # U, upper bandwidth kv, by columns
        xj = x[j] * M[j, kv]  # M[j, kv] = 1 / U_jj
        x[j] = xj
        if xj != 0.0:
            for i in range(max(0, j - kv), j):
                x[i] -= M[j, kv + i - j] * xj
