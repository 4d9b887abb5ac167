"""Linear algebra of the Newton iterations: ``(I - c J) x = b``.

Three interchangeable sets of the same operations, chosen per problem:

* dense (compiled, inside the step loop): LU with partial pivoting (Golub & Van Loan,
  Algorithm 3.4.1) on an (n, n) array: problems without a Jacobian pattern, and small
  ones whose pattern is not banded;
* banded (compiled, inside the step loop): the banded LU of :mod:`sensitivity.ode.banded`
  for patterns whose bandwidths are at most ``MAX_BAND`` (1-D method of lines), with the
  Jacobian from ``ceil((kl + ku + 1) / K)`` dual sweeps straight into band storage; any n;
* Python level, in the Python twin of the kernel (:func:`sensitivity.ode.control.python_twin`):
  ``scipy.sparse.linalg.splu`` of the CSC iteration matrix for other large patterns (2-D
  grids), and LAPACK ``dgbtrf``/``dgbtrs`` for banded patterns when the right-hand side is
  not compiled.

The kernels call ``workspace(n, opts) -> (J, M, piv)``, ``new_jacobian(jac, t, y, p, J)
-> J``, ``factor(J, c, M, piv) -> M`` (the factors of ``I - c J``), ``solve_lu(M, piv,
b, x)`` and ``solve_lu_block(M, piv, X, K, r)`` (K columns at once). The last two
entries of ``opts`` are the band ``[kl, ku]`` (``[-1, -1]``: dense, appended by
:meth:`StiffMethod.run`); the banded ``piv`` carries them too, ``piv = [pivots (n), kl,
ku]``, so that :func:`factor` and :func:`solve_lu` tell the layouts apart by its length.
The Python-level sets replace these names in the twin (:data:`SPARSE`, :data:`BANDED`).
"""

from __future__ import annotations

import numpy as np

from sensitivity._lazy import LazyModule
from sensitivity.ad import nb
from sensitivity.ode import aot
from sensitivity.ode.banded import (
    band_factor,
    band_jac_template,
    band_solve,
    bandwidths,
)
from sensitivity.ode.control import jit, python_twin

sp = LazyModule("scipy.sparse")
lapack = LazyModule("scipy.linalg.lapack")
splinalg = LazyModule("scipy.sparse.linalg")

DENSE = np.array([-1.0, -1.0])  # the band entries of opts for the dense layout


@jit()
def workspace(n, opts):
    """Return ``(J, M, piv)``: Jacobian, factor and pivot storage for the band in ``opts``.

    ``opts[-2:] = [kl, ku]``; negative: dense (n, n) arrays. Banded: J (n, kl + ku + 1),
    M (n, 2 kl + ku + 1) (:mod:`sensitivity.ode.banded`) and ``piv = [.. (n), kl, ku]``.
    """
    kl = int(opts[opts.shape[0] - 2])
    ku = int(opts[opts.shape[0] - 1])
    if kl < 0:
        return np.empty((n, n)), np.empty((n, n)), np.zeros(n, np.int64)
    piv = np.zeros(n + 2, np.int64)
    piv[n], piv[n + 1] = kl, ku
    return np.zeros((n, kl + ku + 1)), np.zeros((n, 2 * kl + ku + 1)), piv


def no_workspace(n, opts):
    """:func:`workspace` of the Python-level sets: their matrices live in scipy objects
    (an unused n x n array would be 134 MB at n = 4096)."""
    return np.empty((0, 0)), np.empty((0, 0)), np.zeros(n, np.int64)


@jit(twin=True)
def new_jacobian(jac, t, y, p, J):
    """Evaluate the Jacobian into ``J`` (dense, or band storage for a banded ``jac``)."""
    jac(t, y, p, J)
    return J


@jit()
def factor(J, c, M, piv):
    """Factor ``M = I - c J`` in place (LU, partial pivoting); return ``M``.

    Dense, or banded when ``piv`` carries a band (length n + 2).
    """
    n = M.shape[0]
    if piv.shape[0] > n:
        band_factor(J, c, M, piv[n], piv[n + 1], piv)
    else:
        dense_factor(J, c, M, piv)
    return M


@jit()
def solve_lu(M, piv, b, x):
    """Solve ``M x = b`` with the factors of :func:`factor` (``x`` may alias ``b``)."""
    n = b.shape[0]
    if piv.shape[0] > n:
        band_solve(M, piv[n], piv[n + 1], piv, b, x)
    else:
        dense_solve(M, piv, b, x)


@jit()
def solve_lu_block(M, piv, X, K, r):
    """Solve ``M x = X[:, k]`` in place for the ``K`` columns of ``X`` (n K,), row-major
    (n, K), with the factors of :func:`factor`; ``r`` (n,) is scratch.

    Dense: the columns together (:func:`dense_solve_block`); banded: one by one.
    """
    n = M.shape[0]
    if piv.shape[0] > n:
        for k in range(K):
            for i in range(n):
                r[i] = X[i * K + k]
            band_solve(M, piv[n], piv[n + 1], piv, r, r)
            for i in range(n):
                X[i * K + k] = r[i]
    else:
        dense_solve_block(M, piv, X, K)


@jit()
def transposed(A, J, piv):
    """Set ``J`` to ``A^T``, both in the storage of the layout of ``piv``.

    Dense: (n, n) arrays. Banded: Jacobian storage (n, w) of :mod:`sensitivity.ode.banded`,
    ``piv`` carrying the band ``(kl, ku)`` of ``A^T`` (``A``'s is ``(ku, kl)``).
    """
    n = A.shape[0]
    if piv.shape[0] > n:
        kl, ku = piv[n], piv[n + 1]
        w = kl + ku + 1
        qw = 0  # q % w
        for q in range(n):
            r0 = max(0, q - kl)
            rw = r0 % w
            for r in range(r0, min(n, q + ku + 1)):
                J[q, rw] = A[r, qw]
                rw = rw + 1 if rw + 1 < w else 0
            qw = qw + 1 if qw + 1 < w else 0
    else:
        for q in range(n):
            for r in range(n):
                J[q, r] = A[r, q]


@jit(inline=True)  # inlined into factor: a second call level per factorisation
def dense_factor(J, c, M, piv):
    """Dense :func:`factor`: ``M = I - c J`` (n, n), Golub & Van Loan Algorithm 3.4.1.

    The diagonal keeps the reciprocals of U's pivots (inf for a zero pivot), so that
    :func:`dense_solve` multiplies: three divisions were a tenth of a small BDF solve.
    """
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
            M[k, k] = inv
        else:  # singular: the solve gives non-finite values, which Newton rejects
            M[k, k] = np.inf


@jit(inline=True)  # inlined into solve_lu: a second call per Newton iteration was ~5%
def dense_solve(M, piv, b, x):
    """Dense :func:`solve_lu`."""
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
        x[i] = acc * M[i, i]  # the reciprocal pivot (dense_factor)


@jit(inline=True)
def dense_solve_block(M, piv, X, K):
    """:func:`dense_solve` of the K columns of ``X`` (n K,), row-major (n, K), side by side.

    Per column the operations and their order are those of :func:`dense_solve`, so the
    results are bitwise its own; but a solve is a chain of dependent operations, which
    the columns interleave instead of running one after another (3 columns of
    Robertson's 3 x 3 system: 25 ns for each column alone).
    """
    n = M.shape[0]
    for k in range(n):
        pk = piv[k]
        if pk != k:
            for c in range(K):
                X[k * K + c], X[pk * K + c] = X[pk * K + c], X[k * K + c]
    for i in range(n):
        for j in range(i):
            m = M[i, j]
            for c in range(K):
                X[i * K + c] -= m * X[j * K + c]
    for i in range(n - 1, -1, -1):
        for j in range(i + 1, n):
            m = M[i, j]
            for c in range(K):
                X[i * K + c] -= m * X[j * K + c]
        for c in range(K):
            X[i * K + c] *= M[i, i]


def sparse_jacobian(jac, t, y, p, J):
    """Sparse :func:`new_jacobian`: ``jac(t, y)`` returns a scipy.sparse matrix (CSC here)."""
    A = sp.csc_matrix(jac(t, y))
    A.sort_indices()
    return A


def sparse_factor(J, c, M, piv):
    """Sparse :func:`factor`: the ``splu`` object of ``I - c J``."""
    n = J.shape[0]
    return splinalg.splu(sp.identity(n, format="csc") - c * J)


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
    lu, ipiv, info = lapack.dgbtrf(ab, kl, ku, overwrite_ab=True)
    return (lu, ipiv, kl, ku)


def banded_solve(M, piv, b, x):
    """Banded :func:`solve_lu` (LAPACK ``dgbtrs``)."""
    lu, ipiv, kl, ku = M
    x[:] = lapack.dgbtrs(lu, kl, ku, b, ipiv)[0]


def _by_columns(solve):
    """:func:`solve_lu_block` from a Python-level ``solve``: one column at a time."""

    def solve_block(M, piv, X, K, r):
        B = X.reshape(-1, K)
        for k in range(K):
            r[:] = B[:, k]
            solve(M, piv, r, r)
            B[:, k] = r

    return solve_block


SPARSE = {
    "new_jacobian": sparse_jacobian,
    "factor": sparse_factor,
    "solve_lu": sparse_solve,
    "solve_lu_block": _by_columns(sparse_solve),
    "workspace": no_workspace,
}
BANDED = {
    "new_jacobian": banded_jacobian,
    "factor": banded_factor,
    "solve_lu": banded_solve,
    "solve_lu_block": _by_columns(banded_solve),
    "workspace": no_workspace,
}
MAX_BAND = 32  # banded LU when both bandwidths are at most this, splu otherwise


# Below this size the stiff kernels run compiled with a dense LU when the problem's pattern
# is not banded: splu steps in Python, which costs more than a dense LU of a small matrix
# (1-D diffusion, BDF, benchmarks/ode_solve.py sizes: dense compiled 0.4x the Python-level
# time at n = 64, 1.2x at 128, 4x at 256; with sensitivities the compiled path wins by 6x
# at n = 120). Banded patterns run compiled with the banded LU at every size.
DENSE_LU_MAX = 128


def band(prob):
    """Return ``(kl, ku)`` if stiff solves of ``prob`` run the compiled banded LU, else None.

    That is: a Jacobian pattern (``jac_sparsity``) with both bandwidths at most
    ``MAX_BAND`` and a band narrower than the matrix (else the dense LU costs no more),
    on a problem with compiled kernels (an :class:`ODEProblem`).
    """
    S = getattr(prob, "jac_sparsity", None)
    if S is None or not getattr(prob, "compile", False) or not hasattr(prob, "kernel"):
        return None
    kl, ku = bandwidths(S)
    return (kl, ku) if max(kl, ku) <= MAX_BAND and kl + ku + 1 < prob.n else None


def band_jacobian(prob, kl, ku):
    """The compiled ``jac(t, y, p, J)`` of ``prob`` filling band storage J (n, kl + ku + 1).

    One kernel of :func:`sensitivity.ode.banded.band_jac_template` per problem, K partials
    per sweep as for the coloured sparse Jacobian (a power of two, at most ``nb.CHUNK``).
    """
    w = kl + ku + 1
    return prob.kernel(band_jac_template, min(nb.CHUNK, 1 << (w - 1).bit_length()))


def sparse_lu(prob):
    """Whether stiff solves of ``prob`` without the compiled banded LU (:func:`band`) use its
    pattern at Python level (banded LAPACK or sparse LU, Python steps)."""
    return getattr(prob, "jac_sparsity", None) is not None and prob.n > DENSE_LU_MAX


def choose(pattern):
    """Return the Python-level override set for a sparsity ``pattern``: BANDED or SPARSE.

    Banded LAPACK LU costs O(n kl (kl + ku)) with no ordering overhead; for the narrow bands
    of 1-D method-of-lines problems it is several times faster than ``splu``, which wins for
    wide bands (2-D and 3-D grids) through its fill-reducing ordering.
    """
    return BANDED if max(bandwidths(pattern)) <= MAX_BAND else SPARSE


def with_band(opts, band=None):
    """``opts`` with the band ``[kl, ku]`` that :func:`workspace` reads appended (dense:
    ``[-1, -1]``)."""
    return np.concatenate([opts, DENSE if band is None else np.asarray(band, np.float64)])


class StiffMethod:
    """The ``run`` shared by the stiff method entries of :data:`sensitivity.ode.solve.METHODS`.

    A subclass names its kernel in :meth:`kernel`: ``kernel(fns, g, t_span, y0, p, tol,
    opts, t_eval, ev_dir, ev_term[, P])`` with ``fns = (rhs, jac[, sens])`` (compiled:
    their addresses, :func:`sensitivity.ode.control.rhs_at`) and ``g`` the event function
    or None; ``takes_sens`` says whether it takes forward sensitivities (``sens`` in
    ``fns``, the trailing ``P``), and :meth:`extra_opts` what it reads after the common
    ``opts``.
    """

    stiff = True
    needs_jac = True
    takes_sens = False

    def kernel(self):
        raise NotImplementedError

    def extra_opts(self, n_y, n_err):
        return ()

    def run(
        self,
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
        n_y=0,
        n_err=0,
        band=None,
    ):
        """Run the compiled kernel, or its Python twin (``compile=False`` or sparse LU).

        ``fns = (functions, g)`` as :func:`sensitivity.ode.solve._functions` returns them.
        With a Jacobian sparsity ``pattern``, ``sparse_jac(t, y)`` (scipy.sparse) feeds a
        banded or sparse LU at Python level (:func:`choose`); compiled with ``band = (kl,
        ku)``, the jac addresses are those of a banded Jacobian (:func:`band_jacobian`) and
        the banded LU runs. Forward sensitivities (``takes_sens``): ``sens`` (the function,
        or its two addresses when compiled; default: the right-hand side), ``P`` (default
        ``p``), ``n_y`` and ``n_err`` as the kernel documents them.
        """
        kernel = self.kernel()
        if not self.takes_sens and (sens is not None or P is not None or n_y or n_err):
            raise TypeError(f"{type(self).__name__} does not take forward sensitivities")
        opts = with_band(np.concatenate([opts, self.extra_opts(n_y, n_err)]), band)
        tail = (P if P is not None else p,) if self.takes_sens else ()
        funcs, g = fns
        if sparse_jac is not None or not compiled:
            rhs = funcs[0]
            if sparse_jac is not None:
                kernel, jac = python_twin(kernel, choose(pattern)), sparse_jac
            else:
                kernel, jac = python_twin(kernel), funcs[1]
            funcs = (rhs, jac) + ((rhs if sens is None else sens,) if self.takes_sens else ())
        elif self.takes_sens:  # the sensitivity function's addresses (the rhs's when unused)
            extra = funcs[:2] if sens is None else np.asarray(sens, np.int64)
            funcs = np.concatenate([funcs, extra])
        args = (funcs, g, t_span, y0, p, tol, opts, t_eval, *ev, *tail)
        if compiled and sparse_jac is None:  # the ahead-of-time kernel (sensitivity.ode.aot)
            key = (kernel.py_func.__name__, g is None)
            fast = aot.kernel(key)
            # solve()'s own arrays have its types; a sensitivity solver's are checked
            if fast is not None and ((sens is None and P is None) or aot.fits(key, args)):
                kernel = fast
        return kernel(*args)
