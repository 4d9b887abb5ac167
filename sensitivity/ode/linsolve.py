"""Linear algebra of the Newton iterations: ``(I - c J) x = b``.

Two interchangeable sets of the same three operations, chosen per problem:

* dense (compiled, inside the step loop): LU with partial pivoting (Golub & Van Loan,
  Algorithm 3.4.1) on an (n, n) array, for small n;
* banded (Python level): LAPACK ``dgbtrf``/``dgbtrs`` in band storage, for large n whose
  known Jacobian pattern has narrow bands (1-D method of lines);
* sparse (Python level): ``scipy.sparse.linalg.splu`` on the CSC iteration matrix, for
  other large sparse patterns.

``new_jacobian(jac, t, y, p, J) -> J``, ``factor(J, c, M, piv) -> M`` (the factors) and
``solve_lu(M, piv, b, x)``; the banded and sparse sets override the dense one in the Python
twin of the BDF kernel (:func:`sensitivity.ode.control.python_twin`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dgbtrf, dgbtrs
from scipy.sparse.linalg import splu

from sensitivity.ode.control import jit, python_twin


@jit(twin=True)
def square(n):
    """The dense path's (n, n) Jacobian or LU workspace (the patterned paths need none)."""
    return np.empty((n, n))


def no_square(n):
    """:func:`square` of the banded and sparse paths: their matrices live in scipy objects
    (an unused n x n array would be 134 MB at n = 4096)."""
    return np.empty((0, 0))


@jit(twin=True)
def new_jacobian(jac, t, y, p, J):
    """Evaluate the dense Jacobian into ``J`` and return it."""
    jac(t, y, p, J)
    return J


@jit(twin=True)
def factor(J, c, M, piv):
    """Factor ``M = I - c J`` in place (LU, partial pivoting); return ``M``."""
    n = J.shape[0]
    for i in range(n):
        for j in range(n):
            M[i, j] = -c * J[i, j]
        M[i, i] += 1.0
    for k in range(n):
        pk = k
        big = abs(M[k, k])
        for i in range(k + 1, n):
            if abs(M[i, k]) > big:
                big = abs(M[i, k])
                pk = i
        piv[k] = pk
        if pk != k:
            for j in range(n):
                M[k, j], M[pk, j] = M[pk, j], M[k, j]
        if M[k, k] != 0.0:
            inv = 1.0 / M[k, k]
            for i in range(k + 1, n):
                M[i, k] *= inv
                m = M[i, k]
                if m != 0.0:
                    for j in range(k + 1, n):
                        M[i, j] -= m * M[k, j]
    return M


@jit(twin=True)
def solve_lu(M, piv, b, x):
    """Solve ``M x = b`` with the factors of :func:`factor` (``x`` may alias ``b``)."""
    n = b.shape[0]
    for i in range(n):
        x[i] = b[i]
    for k in range(n):
        pk = piv[k]
        if pk != k:
            x[k], x[pk] = x[pk], x[k]
    for i in range(n):
        acc = x[i]
        for j in range(i):
            acc -= M[i, j] * x[j]
        x[i] = acc
    for i in range(n - 1, -1, -1):
        acc = x[i]
        for j in range(i + 1, n):
            acc -= M[i, j] * x[j]
        x[i] = acc / M[i, i]


def sparse_jacobian(jac, t, y, p, J):
    """Sparse :func:`new_jacobian`: ``jac(t, y)`` returns a scipy.sparse matrix (CSC here)."""
    A = sp.csc_matrix(jac(t, y))
    A.sort_indices()
    return A


def sparse_factor(J, c, M, piv):
    """Sparse :func:`factor`: the ``splu`` object of ``I - c J``."""
    n = J.shape[0]
    return splu(sp.identity(n, format="csc") - c * J)


def sparse_solve(M, piv, b, x):
    """Sparse :func:`solve_lu`."""
    x[:] = M.solve(b)


def banded_jacobian(jac, t, y, p, J):
    """Banded :func:`new_jacobian`: the COO form of ``jac(t, y)`` and its bandwidths."""
    A = sp.coo_matrix(jac(t, y))
    A.sum_duplicates()  # one stored entry per position: band assignment needs no add.at
    kl = max(int((A.row - A.col).max(initial=0)), 0)
    ku = max(int((A.col - A.row).max(initial=0)), 0)
    return (A.row, A.col, A.data, kl, ku, A.shape[0])


def banded_factor(J, c, M, piv):
    """Banded :func:`factor`: LAPACK ``dgbtrf`` of ``I - c J`` in band storage."""
    row, col, data, kl, ku, n = J
    ab = np.zeros((2 * kl + ku + 1, n))
    ab[kl + ku + row - col, col] = -c * data
    ab[kl + ku] += 1.0
    lu, ipiv, info = dgbtrf(ab, kl, ku, overwrite_ab=True)
    return (lu, ipiv, kl, ku)


def banded_solve(M, piv, b, x):
    """Banded :func:`solve_lu` (LAPACK ``dgbtrs``)."""
    lu, ipiv, kl, ku = M
    x[:] = dgbtrs(lu, kl, ku, b, ipiv)[0]


SPARSE = {
    "new_jacobian": sparse_jacobian,
    "factor": sparse_factor,
    "solve_lu": sparse_solve,
    "square": no_square,
}
BANDED = {
    "new_jacobian": banded_jacobian,
    "factor": banded_factor,
    "solve_lu": banded_solve,
    "square": no_square,
}
MAX_BAND = 32  # banded LU when both bandwidths are at most this, splu otherwise


# Below this size the stiff kernels run compiled with a dense LU even when the problem has
# a sparsity pattern: the banded/sparse LU paths step in Python, which costs more than a
# dense LU of a small matrix (1-D diffusion, BDF, benchmarks/ode_solve.py sizes: dense
# compiled 0.4x the banded time at n = 64, 1.2x at 128, 4x at 256; with sensitivities the
# compiled path wins by 6x at n = 120).
DENSE_LU_MAX = 128


def sparse_lu(prob):
    """Whether stiff solves of ``prob`` use its pattern (banded or sparse LU, Python steps)."""
    return getattr(prob, "jac_sparsity", None) is not None and prob.n > DENSE_LU_MAX


def choose(pattern):
    """Return the override set for a sparsity ``pattern``: BANDED or SPARSE.

    Banded LAPACK LU costs O(n kl (kl + ku)) with no ordering overhead; for the narrow bands
    of 1-D method-of-lines problems it is several times faster than ``splu``, which wins for
    wide bands (2-D and 3-D grids) through its fill-reducing ordering.
    """
    A = sp.coo_matrix(pattern)
    kl = (A.row - A.col).max(initial=0)
    ku = (A.col - A.row).max(initial=0)
    return BANDED if max(kl, ku) <= MAX_BAND else SPARSE


def run_stiff(
    kernel,
    native,
    fns,
    compiled,
    t_span,
    y0,
    p,
    tol,
    opts,
    t_eval,
    ev,
    sparse_jac=None,
    pattern=None,
):
    """Run a stiff kernel ``kernel(rhs, jac, g, ...)`` on the right linear algebra.

    With a sparsity ``pattern``, its Python twin with the banded or sparse LU of
    :func:`choose` and ``sparse_jac(t, y)``; compiled, ``native(addresses, ...)``;
    otherwise the twin on the Python callables ``fns = (rhs, g, jac)``.
    """
    if sparse_jac is not None:
        twin = python_twin(kernel, choose(pattern))
        return twin(fns[0], sparse_jac, fns[1], t_span, y0, p, tol, opts, t_eval, *ev)
    if compiled:
        return native(fns, t_span, y0, p, tol, opts, t_eval, *ev)
    return python_twin(kernel)(fns[0], fns[2], fns[1], t_span, y0, p, tol, opts, t_eval, *ev)


def run_stiff_sens(
    kernel,
    native,
    fns,
    compiled,
    t_span,
    y0,
    p,
    tol,
    opts,
    t_eval,
    ev,
    sparse_jac=None,
    pattern=None,
    sens=None,
    P=None,
):
    """:func:`run_stiff` for kernels that also take forward sensitivities (BDF, ESDIRK).

    ``kernel(rhs, jac, g, ..., ev_dir, ev_term, sens, P)`` and ``native(addresses, ...,
    ev_dir, ev_term, P)`` with ``addresses = [rhs, g, jac, sens]`` (two each); without
    sensitivities ``sens`` is ``rhs`` and ``P`` is ``p``.
    """
    P = p if P is None else P
    if sparse_jac is not None or not compiled:
        rhs, g = fns[0], fns[1]
        sens = rhs if sens is None else sens
        if sparse_jac is not None:
            twin, jac = python_twin(kernel, choose(pattern)), sparse_jac
        else:
            twin, jac = python_twin(kernel), fns[2]
        return twin(rhs, jac, g, t_span, y0, p, tol, opts, t_eval, *ev, sens, P)
    addr = np.concatenate([fns, fns[:2] if sens is None else np.asarray(sens, np.int64)])
    return native(addr, t_span, y0, p, tol, opts, t_eval, *ev, P)
