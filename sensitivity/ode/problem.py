"""ODEProblem: an initial value problem y' = f(t, y, p), y(t0) = y0, and its derivatives.

The right-hand side is written once, in place, in the numba style::

    def f(t, y, p, dydt):
        dydt[0] = p[0]*y[0] - p[1]*y[0]*y[1]
        dydt[1] = -p[2]*y[1] + p[3]*y[0]*y[1]

and compiled for floats and for dual numbers (:mod:`sensitivity.ad.nb`), which
give J v, df/dp u, dense Jacobians in chunks of K = 8 columns, and sparse
Jacobians from a column colouring (:mod:`sensitivity.ad.sparsity`). This class
holds the solver-independent part: validated data, the compiled kernels the
integrators call from their own compiled loops, and the contract methods of
DESIGN.md section 3.

Derivatives through ``if`` branches are pathwise (the branch taken at the
point of evaluation).
"""

from __future__ import annotations

import numbers

import numpy as np
from numba.core import errors as nb_errors

from sensitivity._lazy import LazyModule
from sensitivity.ad import nb
from sensitivity.ad.sparsity import (
    NO_RUNS,
    as_pattern,
    color_columns,
    colour_runs,
    compression,
    detect_sparsity,
)

sp = LazyModule("scipy.sparse")

__all__ = ["AUTO_SPARSE_MIN", "ODEProblem"]

AUTO_SPARSE_MIN = 64  # from this size on, a Jacobian's pattern is detected when not given


def _vector(x, name, allow_empty=False):
    if hasattr(x, "_ad_tag"):
        raise TypeError(f"{name} must hold plain floats, got a differentiated array")
    try:
        a = np.array(x, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a 1-D array of real numbers: {e}") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ValueError(f"{name} must be finite; {name}[{bad[0]}] = {a[bad[0]]}")
    return a


def _t_span(t_span):
    try:
        t0, t1 = (float(v) for v in t_span)
    except (TypeError, ValueError):
        raise TypeError(f"t_span must be a pair of real numbers (t0, t1), got {t_span!r}") from None
    if not (np.isfinite(t0) and np.isfinite(t1)):
        raise ValueError(f"t_span must be finite, got {(t0, t1)}")
    if t0 == t1:
        raise ValueError(f"t_span must have t0 != t1 (it may run backwards), got {(t0, t1)}")
    return (t0, t1)


def _colouring(S):
    return color_columns(S) if S is not None else None


class ODEProblem:
    """An ODE right-hand side with its data and compiled derivative kernels.

    Parameters
    ----------
    f : callable
        ``f(t, y, p, dydt)`` writing dy/dt into ``dydt`` in place; numba-
        compilable when ``compile`` is True (or already an ``njit`` function).
    y0 : array_like, shape (n,)
        Initial state, finite.
    t_span : (float, float)
        ``(t0, t1)``; ``t1 < t0`` integrates backwards.
    p : array_like, shape (m,), optional
        Parameters, finite. None means no parameters (m = 0).
    jac_sparsity : array_like or scipy.sparse, shape (n, n), optional
        Nonzero pattern of df/dy. None: detected (:func:`detect_sparsity`) when
        n >= ``AUTO_SPARSE_MIN``, dense otherwise. False: always dense.
    param_sparsity : array_like or scipy.sparse, shape (n, m), optional
        Likewise for df/dp (detected when m >= ``AUTO_SPARSE_MIN``).
    compile : bool
        True compiles ``f`` with numba (floats and duals). False runs it in
        plain Python on numpy arrays and the numpy-level duals.

    Attributes
    ----------
    n, m : int
        Sizes of y and p.
    rhs_kernel, jac_kernel, param_jac_kernel : callables
        ``rhs(t, y, p, dydt)``, ``jac(t, y, p, J)`` filling (n, n) and
        ``param_jac(t, y, p, Jp)`` filling (n, m); njit functions that compiled
        integrators may call.
    jvp_kernel, param_jvp_kernel : callables
        ``jvp(t, y, p, v, out)`` and ``param_jvp(t, y, p, u, out)``.
    jac_sparsity, param_sparsity : scipy.sparse.csr_matrix or None
    jac_colors, param_colors : (ndarray, int) or None
        Column colouring of the patterns.
    K : int
        Partials per dual sweep of the dense and jvp kernels: the smallest power
        of two >= max(n, m), at most 8 (one compilation of ``f`` per dual argument).

    Raises
    ------
    TypeError
        Wrong argument types; a right-hand side numba cannot compile
        (:class:`sensitivity.ad.nb.RHSCompileError`, naming the construct).
    ValueError
        Wrong shapes, non-finite ``y0``/``p``, or ``f`` non-finite at (t0, y0).
    """

    def __init__(self, f, y0, t_span, p=None, jac_sparsity=None, param_sparsity=None, compile=True):
        if not callable(f):
            raise TypeError(f"f must be callable f(t, y, p, dydt), got {type(f).__name__}")
        if not isinstance(compile, (bool, np.bool_)):
            raise TypeError(f"compile must be True or False, got {compile!r}")
        self.f = f
        self.y0 = _vector(y0, "y0")
        self.p = _vector(np.zeros(0) if p is None else p, "p", allow_empty=True)
        self.t_span = _t_span(t_span)
        self.n, self.m = self.y0.size, self.p.size
        self.compile = bool(compile)
        self.rhs_kernel = nb.compile_rhs(f) if self.compile else nb._py_func(f)
        self._kernels = {}
        # One K (a power of two) for the dense and jvp kernels: each distinct K is
        # another compilation of f on duals (first-call latency).
        self.K = min(nb.CHUNK, 1 << (max(self.n, self.m, 1) - 1).bit_length())
        self._compressions = {}
        self._check_rhs()
        self.jac_sparsity = self._pattern(jac_sparsity, "jac_sparsity", "jac_cols", self.n)
        self.param_sparsity = self._pattern(
            param_sparsity, "param_sparsity", "param_jac_cols", self.m
        )
        self.jac_colors = _colouring(self.jac_sparsity)
        self.param_colors = _colouring(self.param_sparsity)

    def __repr__(self):
        mode = "compiled" if self.compile else "python"
        return f"ODEProblem(n={self.n}, m={self.m}, t_span={self.t_span}, {mode})"

    # ---- kernels ----------------------------------------------------------------------

    def kernel(self, kind, K=None):
        """Return (building on first use) the derivative kernel ``kind`` of :mod:`.nb`."""
        if K is None:
            K = self.K
        key = (kind, K)
        if key not in self._kernels:
            self._kernels[key] = nb.make_kernel(kind, self.rhs_kernel, K, compile=self.compile)
        return self._kernels[key]

    @property
    def jac_kernel(self):
        return self.kernel("jac")

    @property
    def param_jac_kernel(self):
        return self.kernel("param_jac")

    @property
    def jvp_kernel(self):
        return self.kernel("jvp")

    @property
    def param_jvp_kernel(self):
        return self.kernel("param_jvp")

    def _call(self, fn, *args):
        # Compilation happens on the first call with dual types: translate its errors.
        try:
            return fn(*args)
        except (nb_errors.TypingError, nb_errors.UnsupportedError, nb_errors.LoweringError) as e:
            name = f"f ({getattr(self.f, '__name__', 'f')})"
            if not self.compile:  # only an njit helper called by f can fail to compile here
                raise TypeError(
                    f"{name} calls a numba-compiled function that cannot take the numpy-level "
                    "duals of compile=False; make the helper plain Python, or set "
                    f"NUMBA_DISABLE_JIT=1 ({nb.explain_compile_error(e, 'it')})"
                ) from None
            raise nb.explain_compile_error(e, name) from None

    def _check_rhs(self):
        t0 = self.t_span[0]
        dydt = self.rhs(t0, self.y0)
        bad = np.flatnonzero(~np.isfinite(dydt))
        if bad.size:
            raise ValueError(
                f"f returned a non-finite value at t = {t0}, y = y0: "
                f"dydt[{bad[0]}] = {dydt[bad[0]]}"
            )

    def _pattern(self, S, name, cols_kind, ncols):
        S = self._detect_pattern(S, name, cols_kind, ncols)
        if S is not None:  # read-only: the sparse Jacobians share its index arrays
            S.indices.flags.writeable = False
            S.indptr.flags.writeable = False
        return S

    def _detect_pattern(self, S, name, cols_kind, ncols):
        if S is False or ncols == 0:
            return None
        if S is not None:
            return as_pattern(S, (self.n, ncols), name)
        if ncols < AUTO_SPARSE_MIN:
            return None
        K = min(nb.CHUNK, ncols)
        kern = self.kernel(cols_kind, K)
        vary = "p" if "param" in cols_kind else "y"

        def cols(t, y, p, c0, E):
            self._call(kern, t, y, p, c0, E)

        t0 = self.t_span[0]
        return detect_sparsity(cols, self.n, ncols, K, t0, self.y0, self.p, vary)

    # ---- contract methods (DESIGN.md section 3) ------------------------------------------

    def _args(self, t, y, p):
        if not isinstance(t, numbers.Real):
            raise TypeError(f"t must be a real number, got {type(t).__name__}")
        y = np.ascontiguousarray(y, dtype=np.float64)
        if y.shape != (self.n,):
            raise ValueError(f"y must have shape ({self.n},), got {y.shape}")
        if p is None:
            p = self.p
        else:
            p = np.ascontiguousarray(p, dtype=np.float64)
            if p.shape != (self.m,):
                raise ValueError(f"p must have shape ({self.m},), got {p.shape}")
        return float(t), y, p

    def rhs(self, t, y, p=None):
        """Return f(t, y, p), shape (n,)."""
        t, y, p = self._args(t, y, p)
        out = np.empty(self.n)
        self._call(self.rhs_kernel, t, y, p, out)
        return out

    def jacobian(self, t, y, p=None):
        """Return df/dy at (t, y): csr_matrix (n, n) if a pattern is known, else ndarray.

        The sparse result has the structure of ``jac_sparsity`` with, in most rows, the
        entries ordered by the colour of their column instead of by column (so that its
        values are copied from the compressed Jacobian rather than gathered; scipy
        accepts unsorted indices, and ``.sort_indices()`` sorts them). Its index arrays
        are shared between results, read-only: its methods that change the structure in
        place (``eliminate_zeros``, ``sort_indices``, ...) copy them first; write into
        ``.data`` freely, and ``.copy()`` before writing into ``.indices`` yourself.
        :meth:`jacobian_values` gives the values in ``jac_sparsity``'s own order.
        """
        t, y, p = self._args(t, y, p)
        if self.jac_sparsity is not None:
            return self._sparse(t, y, p, self.jac_sparsity, self.jac_colors, "sparse_jac")
        J = np.empty((self.n, self.n))
        self._call(self.jac_kernel, t, y, p, J)
        return J

    def param_jacobian(self, t, y, p=None):
        """Return df/dp at (t, y): csr_matrix (n, m) if a pattern is known, else ndarray."""
        t, y, p = self._args(t, y, p)
        if self.param_sparsity is not None:
            return self._sparse(t, y, p, self.param_sparsity, self.param_colors, "sparse_param_jac")
        J = np.empty((self.n, self.m))
        if self.m:
            self._call(self.param_jac_kernel, t, y, p, J)
        return J

    def _sparse(self, t, y, p, S, colouring, kind):
        kern, seeds, pos, runs, loose, like = self._sparse_setup(S, colouring, kind, True)
        data = np.empty(pos.shape[0])  # not zeros: the kernel writes every stored value
        if pos.shape[0]:
            self._call(kern, t, y, p, seeds, pos, runs, loose, data)
        return _csr_like(like, data)

    def _sparse_setup(self, S, colouring, kind, by_colour=False):
        """Return (kernel, seeds, pos, runs, loose, like) of a sparse Jacobian, built on
        first use: values in ``S``'s order, or with ``by_colour`` in the order of
        :func:`~sensitivity.ad.sparsity.colour_runs` (mostly copied, not gathered), the
        structure of the result then ``like`` (``S`` with each row reordered)."""
        setup = self._compressions.get((kind, by_colour))
        if setup is None:
            colors, ncolors = colouring
            # a power of two: <3 x double> vectors measured slower than <4 x double>
            K = min(nb.CHUNK, 1 << (max(ncolors, 1) - 1).bit_length())
            seeds, pos = compression(S, colors, ncolors, K)
            perm, runs, loose = colour_runs(S, colors, ncolors, K) if by_colour else NO_RUNS
            like = S
            if perm is not None:
                pos = pos[perm]
                like = sp.csr_matrix((S.data, S.indices[perm], S.indptr), shape=S.shape)
                like.indices.flags.writeable = like.indptr.flags.writeable = False
            if pos.size and int(pos.max()) < 2**32:
                # half the bytes of int64 for the kernel's gather to stream
                pos = pos.astype(np.uint32)
            setup = (self.kernel(kind, K), seeds, pos, runs, loose, like)
            self._compressions[(kind, by_colour)] = setup
        return setup

    def _sparse_values(self, t, y, p, S, colouring, kind, data):
        kern, seeds, pos, runs, loose, _ = self._sparse_setup(S, colouring, kind)
        if pos.shape[0]:  # (S.nnz is a scipy call: a quarter microsecond per use)
            self._call(kern, t, y, p, seeds, pos, runs, loose, data)
        return data

    def jacobian_values(self, t, y, out=None, p=None):
        """Return the stored values of the sparse df/dy, ordered as ``jac_sparsity.data``.

        For integrators that refactor the same pattern many times: no scipy
        matrix is built (with its copied index arrays, a quarter more time at n = 10^4).

        Parameters
        ----------
        t : float
        y : ndarray, shape (n,)
        out : ndarray, shape (nnz,), optional
            Filled in place and returned.
        p : ndarray, shape (m,), optional

        Raises
        ------
        ValueError
            If the problem has no ``jac_sparsity`` or ``out`` has the wrong shape.
        """
        if self.jac_sparsity is None:
            raise ValueError("jacobian_values needs a jac_sparsity pattern; this problem is dense")
        t, y, p = self._args(t, y, p)
        setup = self._sparse_setup(self.jac_sparsity, self.jac_colors, "sparse_jac")
        kern, seeds, pos, runs, loose, _ = setup
        nnz = pos.shape[0]
        if out is None:
            out = np.empty(nnz)  # not zeros: the kernel writes every stored value
        elif not (isinstance(out, np.ndarray) and out.shape == (nnz,) and out.dtype == np.float64):
            raise ValueError(f"out must be a float64 array of shape ({nnz},)")
        if nnz:
            self._call(kern, t, y, p, seeds, pos, runs, loose, out)
        return out

    def jvp(self, t, y, v, p=None):
        """Return (df/dy) v at (t, y), shape (n,): one dual sweep."""
        t, y, p = self._args(t, y, p)
        v = np.ascontiguousarray(v, dtype=np.float64)
        if v.shape != (self.n,):
            raise ValueError(f"v must have shape ({self.n},), got {v.shape}")
        out = np.empty(self.n)
        self._call(self.jvp_kernel, t, y, p, v, out)
        return out

    def param_jvp(self, t, y, u, p=None):
        """Return (df/dp) u at (t, y), shape (n,): one dual sweep."""
        t, y, p = self._args(t, y, p)
        u = np.ascontiguousarray(u, dtype=np.float64)
        if u.shape != (self.m,):
            raise ValueError(f"u must have shape ({self.m},), got {u.shape}")
        out = np.zeros(self.n)
        if self.m:
            self._call(self.param_jvp_kernel, t, y, p, u, out)
        return out

    def vjp(self, t, y, w, p=None):
        """Return (df/dy)^T w at (t, y), shape (n,).

        Forward mode only: the Jacobian is formed (sparse from the colouring when
        a pattern is known, else dense in ceil(n/8) sweeps) and transposed.
        """
        w = np.asarray(w, dtype=np.float64)
        if w.shape != (self.n,):
            raise ValueError(f"w must have shape ({self.n},), got {w.shape}")
        J = self.jacobian(t, y, p)
        return np.asarray(J.T @ w).ravel()

    def param_vjp(self, t, y, w, p=None):
        """Return (df/dp)^T w at (t, y), shape (m,) (forms df/dp, see :meth:`vjp`)."""
        w = np.asarray(w, dtype=np.float64)
        if w.shape != (self.n,):
            raise ValueError(f"w must have shape ({self.n},), got {w.shape}")
        J = self.param_jacobian(t, y, p)
        return np.asarray(J.T @ w).ravel()


def _share_structure(base, name):
    """A subclass of the CSR class ``base`` whose index arrays may be shared and read-only.

    The methods that change a matrix's structure in place copy the index arrays first
    (copy on write), so the shared pattern is never changed through a result.
    """

    def _own(self):
        if not (self.indices.flags.writeable and self.indptr.flags.writeable):
            self.indices, self.indptr = self.indices.copy(), self.indptr.copy()

    def in_place(name):
        def method(self, *args, **kwargs):
            _own(self)
            return getattr(base, name)(self, *args, **kwargs)

        method.__name__ = name
        method.__doc__ = getattr(base, name).__doc__
        return method

    names = ("sort_indices", "sum_duplicates", "eliminate_zeros", "prune", "resize")
    attrs = {name: in_place(name) for name in names}
    attrs["__module__"] = __name__
    attrs["__doc__"] = f"A {base.__name__} sharing the pattern of an ODEProblem (copy on write)."
    return type(name, (base,), attrs)


_SHARED = []  # the copy-on-write subclass of csr_matrix, made on first use


def __getattr__(name):
    """``SharedPatternCSRMatrix``, made on first use (scipy.sparse loads lazily); a module
    attribute, so that the results pickle."""
    if name == "SharedPatternCSRMatrix":
        if not _SHARED:
            _SHARED.append(_share_structure(sp.csr_matrix, name))
        return _SHARED[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _csr_like(S, data):
    """A CSR matrix with the structure of ``S`` (validated once, when the pattern was set)
    and the values ``data``.

    scipy's constructor re-validates indices and indptr, O(nnz) Python-level work that
    cost twice the compiled dual sweep at n = 10^4, and copying them cost another 1.4
    evaluations of f (n = 10^4). The result therefore shares ``S``'s index arrays, made
    read-only; the structure-changing methods copy them first (:func:`_share_structure`).
    """
    M = sp.csr_matrix.__new__(__getattr__("SharedPatternCSRMatrix"))
    M.__dict__.update(S.__dict__)  # S is a csr_matrix (sensitivity.ad.sparsity.as_pattern)
    M.data = data
    return M
