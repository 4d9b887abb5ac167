"""Linear algebra of the Newton iterations: ``(I - c J) x = b``.

Two interchangeable sets of the same three operations, chosen per problem:

* dense (compiled, inside the step loop): LU with partial pivoting (Golub & Van Loan,
  Algorithm 3.4.1) on an (n, n) array, for small n;
* sparse (Python level): ``scipy.sparse.linalg.splu`` on the CSR iteration matrix, for
  large n with a known Jacobian sparsity pattern.

``new_jacobian(jac, t, y, p, J) -> J``, ``factor(J, c, M, piv) -> M`` (the factors) and
``solve_lu(M, piv, b, x)``; the sparse set overrides the dense one in the Python twin of the
BDF kernel (:func:`sensitivity.ode.control.python_twin`).
"""

from __future__ import annotations

import scipy.sparse as sp
from scipy.sparse.linalg import splu

from sensitivity.ode.control import jit


@jit()
def new_jacobian(jac, t, y, p, J):
    """Evaluate the dense Jacobian into ``J`` and return it."""
    jac(t, y, p, J)
    return J


@jit()
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


@jit()
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
    """Sparse :func:`new_jacobian`: ``jac(t, y)`` returns a scipy.sparse matrix."""
    return sp.csc_matrix(jac(t, y))


def sparse_factor(J, c, M, piv):
    """Sparse :func:`factor`: the ``splu`` object of ``I - c J``."""
    n = J.shape[0]
    return splu(sp.identity(n, format="csc") - c * J)


def sparse_solve(M, piv, b, x):
    """Sparse :func:`solve_lu`."""
    x[:] = M.solve(b)


SPARSE = {"new_jacobian": sparse_jacobian, "factor": sparse_factor, "solve_lu": sparse_solve}
