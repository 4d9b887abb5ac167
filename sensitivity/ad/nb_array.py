"""``DualArray{K}`` inside numba: indexing, slices, reductions and scratch arrays.

Supported on a 1-D dual array ``y`` (values (n,), partials (n, K)):
``y[i]`` (a ``Dual{K}``; negative ``i`` wraps), ``y[i] = x`` for a dual or a
number, ``y[a:b:c]`` (a view), ``y[a:b] = x`` for a number, a dual or a dual
array, ``len(y)``, ``y.shape``, ``y.size``, ``y.ndim``, ``y.val``, ``y.eps``,
``np.sum(y)``, ``np.dot`` of two 1-D arrays (either or both dual),
``np.empty_like(y)``, ``np.zeros_like(y)``, ``y.copy()`` and
:func:`similar`. Whole-array arithmetic (``y + 1``) is not supported: write
the loop, which is what numba compiles best anyway.
"""

from __future__ import annotations

import operator

import numba
import numpy as np
from numba import njit
from numba.core import types
from numba.extending import overload, overload_attribute, overload_method

from sensitivity.ad.nb_types import (
    DualArrayType,
    DualType,
    make_dual,
    pack_dual_array,
    zero_vec,
)

__all__ = ["dual_array", "empty_dual", "similar"]

_REAL = (types.Float, types.Integer, types.Boolean)


def _like(a):
    """Return ``pack(val, eps, tag)`` building a dual array with the K of ``a``."""
    K = a.K

    @njit(inline="always")
    def pack(val, eps, tag):
        return pack_dual_array(val, eps, tag, K)

    return pack


@overload(len, target="cpu")
def _len(a):
    if isinstance(a, DualArrayType):
        return lambda a: len(a.val)
    return None


@overload_attribute(DualArrayType, "shape")
def _shape(a):
    return lambda a: a.val.shape


@overload_attribute(DualArrayType, "size")
def _size(a):
    return lambda a: a.val.size


@overload_attribute(DualArrayType, "ndim")
def _ndim(a):
    return lambda a: 1


# inline="always": the index wrap below then lands in the caller's own IR, where
# LLVM sees the loop bounds and drops it (as for float arrays); compiled as a
# separate function it became branch-free bit arithmetic that survived inlining,
# about 6 instructions per y[i] in a stencil (benchmarks/nb_duals.py, issue 3).
# (numba cannot inline setitem overloads; stores index with the loop counter.)
@overload(operator.getitem, target="cpu")
def _getitem(a, i):
    if not isinstance(a, DualArrayType):
        return None
    # integer i: lowered directly in nb_types (_dual_item), see there why
    if isinstance(i, types.SliceType):
        pack = _like(a)
        return lambda a, i: pack(a.val[i], a.eps[i], a.tag)
    return None


def _setitem_slice(a, v):
    if isinstance(v, DualArrayType):
        if v.K != a.K:
            return None

        def impl(a, i, v):
            a.val[i] = v.val
            a.eps[i] = v.eps

        return impl
    if isinstance(v, (DualType,) + _REAL):

        def impl(a, i, v):
            view = a[i]
            for k in range(len(view)):
                view[k] = v

        return impl
    return None


@overload(operator.setitem, target="cpu")
def _setitem(a, i, v):
    if not isinstance(a, DualArrayType):
        return None
    # integer i: lowered directly in nb_types (_dual_set_item)
    if isinstance(i, types.SliceType):
        return _setitem_slice(a, v)
    return None


@overload(np.sum, target="cpu")
def _sum(a):
    if isinstance(a, DualArrayType):

        def impl(a):
            s = make_dual(0.0, zero_vec(a))
            for i in range(len(a)):
                s += a[i]
            return s

        return impl
    return None


def _is_vec(t):
    return isinstance(t, DualArrayType) or (isinstance(t, types.Array) and t.ndim == 1)


@overload(np.dot, target="cpu")
def _dot(a, b):
    if not (isinstance(a, DualArrayType) or isinstance(b, DualArrayType)):
        return None
    if not (_is_vec(a) and _is_vec(b)):
        return None
    first = isinstance(a, DualArrayType)

    def impl(a, b):
        n = len(a)
        if len(b) != n:
            raise ValueError("np.dot: shapes of the two vectors differ")
        s = make_dual(0.0, zero_vec(a if first else b))
        for i in range(n):
            s += a[i] * b[i]
        return s

    return impl


@overload(np.empty_like, target="cpu")
def _empty_like(a):
    if isinstance(a, DualArrayType):
        pack = _like(a)
        K = a.K
        return lambda a: pack(np.empty(len(a)), np.empty((len(a), K)), a.tag)
    return None


@overload(np.zeros_like, target="cpu")
def _zeros_like(a):
    if isinstance(a, DualArrayType):
        pack = _like(a)
        K = a.K
        return lambda a: pack(np.zeros(len(a)), np.zeros((len(a), K)), a.tag)
    return None


@overload_method(DualArrayType, "copy")
def _copy(a):
    pack = _like(a)
    return lambda a: pack(a.val.copy(), np.ascontiguousarray(a.eps), a.tag)


def similar(y, *like):
    """Return a zero-filled scratch array, shape (len(y),), that can hold what y holds.

    In a right-hand side, ``tmp = similar(y)`` gives a float array when ``y``
    holds floats and a dual array with the same partials when ``y`` holds
    duals, so the function compiles for both (``np.empty(n)`` would be a float
    array that cannot hold duals). Pass more arrays, ``similar(y, p)``, when
    the scratch values combine them: the result is dual if any of them is.
    Works in compiled code and in plain Python.

    Parameters
    ----------
    y : ndarray or Dual, shape (n,)
    *like : ndarray or Dual
        Further arrays whose kind (float or dual) the result must cover.

    Returns
    -------
    ndarray or Dual, shape (n,)
        Zeros, with zero partials if dual.
    """
    n = len(y)
    duals = [a for a in (y,) + like if hasattr(a, "eps") and hasattr(a, "val")]
    if duals:
        # the outermost differentiation (highest tag) carries the nested ones inside it
        return _zeros_as(max(duals, key=lambda a: a._ad_tag), (n,))
    dtype = np.result_type(*[np.asarray(a).dtype for a in (y,) + like], float)
    return np.zeros(n, dtype=dtype)


def _zeros_as(a, shape):
    # zeros with the nesting of dual `a` (values and partials, level by level)
    if not (hasattr(a, "eps") and hasattr(a, "val")):
        return np.zeros(shape)
    K = np.shape(a.eps)[-1]
    return type(a)(_zeros_as(a.val, shape), _zeros_as(a.eps, shape + (K,)), a._ad_tag)


@overload(similar, target="cpu")
def _similar(y, *like):
    kinds = (y,) + tuple(like)
    if not all(isinstance(a, (DualArrayType, types.Array)) for a in kinds):
        return None
    duals = [a for a in kinds if isinstance(a, DualArrayType)]
    if not duals:
        return lambda y, *like: np.zeros(len(y))
    if len({a.K for a in duals}) != 1:
        return None
    K = duals[0].K

    @njit(inline="always")
    def pack(val, eps):
        return pack_dual_array(val, eps, 0, K)

    return lambda y, *like: pack(np.zeros(len(y)), np.zeros((len(y), K)))


def dual_array(val, eps, tag=0):
    """Wrap values (n,) and partials (n, K) as a dual array (views, no copy).

    In compiled code this builds a ``DualArray{K}`` (``K = eps.shape[1]`` must
    be a compile-time constant there: pass a literal or a closure constant via
    :func:`make_seeded`); in plain Python it builds the numpy-level
    :class:`sensitivity.ad.dual.Dual`.

    Parameters
    ----------
    val : ndarray, shape (n,)
    eps : ndarray, shape (n, K), rows contiguous
    tag : int
        Differentiation tag (:func:`sensitivity.ad.core.new_tag`).
    """
    from sensitivity.ad.dual import Dual

    return Dual(val, eps, tag if tag else None)  # tag 0 (compiled code's default): a fresh one


def dual_array_k(val, eps, tag, K):
    """:func:`dual_array` with the number of partials ``K`` given (compile-time).

    ``K`` should be a constant of the compiled function (a literal, a global or
    a closure variable). A run-time ``K`` argument works through
    ``numba.literally``, but every call from Python then re-dispatches on its
    value (about 30 ms per call measured).

    Raises
    ------
    ValueError
        If ``eps`` does not have the shape (len(val), K).
    """
    if np.ndim(eps) != 2 or np.shape(eps)[1] != K or len(eps) != len(val):
        raise ValueError("dual_array_k: eps must have shape (len(val), K)")
    return dual_array(val, eps, tag)


@overload(dual_array_k, prefer_literal=True, target="cpu")
def _dual_array_k(val, eps, tag, K):
    if isinstance(K, types.IntegerLiteral):

        def impl(val, eps, tag, K):
            # y[i] addresses row i of a C-contiguous eps at i*K: the shape must agree
            if eps.shape[0] != val.shape[0] or eps.shape[1] != K:
                raise ValueError("dual_array_k: eps must have shape (len(val), K)")
            return pack_dual_array(val, eps, tag, K)

        return impl
    if isinstance(K, types.Integer):  # ask numba to specialise the caller on the value of K
        return lambda val, eps, tag, K: numba.literally(K)
    return None


def empty_dual(like, n):
    """Return an uninitialised dual array of length ``n`` with the partials and tag of ``like``.

    Works in compiled code (``DualArray{K}``) and in plain Python (numpy-level
    ``Dual``, where sharing the tag matters: a result must carry its inputs' tag).
    """
    K = np.shape(like.eps)[-1]
    return type(like)(np.empty(n), np.empty((n, K)), like._ad_tag)


@overload(empty_dual, target="cpu")
def _empty_dual(like, n):
    if isinstance(like, DualArrayType) and isinstance(n, types.Integer):
        pack = _like(like)
        K = like.K
        return lambda like, n: pack(np.empty(n), np.empty((n, K)), like.tag)
    return None
