"""``DualArray2{K}`` inside numba: two ``DualArray{K}`` (value part A, δ part B).

A 1-D array of ``Dual2{K}`` (:mod:`.nb_dual2`) is stored as ``A`` (values (n,),
ε-partials (n, K)) and ``B`` (δ-partials (n,), cross partials (n, K)); every
operation is composed from the ``DualArray{K}`` operations of :mod:`.nb_array`:
``y[i]`` is ``Dual2(A[i], B[i])``, ``y[i] = x`` stores ``x.a`` and ``x.b`` (a
``Dual{K}`` or a number stores b = 0), ``y[a:b:c]`` is a view, ``y[a:b] = x``
takes a number, a dual of either order or an array of either order. Also
``len``, ``shape``, ``size``, ``ndim``, ``np.sum``, ``np.dot`` (any mix of
float, ``DualArray{K}`` and ``DualArray2{K}`` vectors), ``np.empty_like``,
``np.zeros_like``, ``y.copy()`` and :func:`sensitivity.similar`.

:func:`dual2_array_k` builds one from four float arrays; in plain Python
(``compile=False`` or ``NUMBA_DISABLE_JIT=1``) it builds the equivalent nested
numpy-level duals of :mod:`sensitivity.ad.dual` (an outer ``Dual`` with one
partial, tag ``tag2``, over inner duals with K partials, tag ``tag``), and
:func:`dual2_parts` reads the four parts back from either.
"""

from __future__ import annotations

import operator

import numpy as np
from numba import njit
from numba.core import cgutils, types
from numba.extending import (
    intrinsic,
    make_attribute_wrapper,
    models,
    overload,
    overload_attribute,
    overload_method,
    register_model,
)

from sensitivity.ad import nb_array
from sensitivity.ad.core import new_tag
from sensitivity.ad.dual import Dual
from sensitivity.ad.nb_dual2 import Dual2Type, make_dual2
from sensitivity.ad.nb_types import STAMP, DualArrayType, DualType, pack_dual_array

__all__ = ["DualArray2Type", "dual2_array_k", "dual2_parts", "empty_dual2"]

_REAL = (types.Float, types.Integer, types.Boolean)


class DualArray2Type(types.Type):
    """``DualArray2{K}``: value part ``A`` and δ part ``B``, both ``DualArray{K}``."""

    def __init__(self, A, B):
        if A.K != B.K:
            raise TypeError("DualArray2: both parts must carry the same number of partials")
        self.A = A
        self.B = B
        self.K = A.K
        self.dual2 = Dual2Type(A.K)
        self.stamp = STAMP  # as DualArrayType: a type from an older cache never matches
        super().__init__(name=f"DualArray2_{A.K}[{A.name},{B.name}]")

    @property
    def key(self):
        return (self.A, self.B, getattr(self, "stamp", None))

    @property
    def mutable(self):
        return True


@register_model(DualArray2Type)
class _DualArray2Model(models.StructModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, [("A", fe_type.A), ("B", fe_type.B)])


make_attribute_wrapper(DualArray2Type, "A", "A")
make_attribute_wrapper(DualArray2Type, "B", "B")


@intrinsic
def pack_dual2_array(typingctx, A, B):
    """Build a ``DualArray2{K}`` from two ``DualArray{K}`` (no copies)."""
    if not (isinstance(A, DualArrayType) and isinstance(B, DualArrayType) and A.K == B.K):
        return None
    aty = DualArray2Type(A, B)

    def codegen(context, builder, sig, args):
        da = cgutils.create_struct_proxy(aty)(context, builder)
        da.A = args[0]
        da.B = args[1]
        if context.enable_nrt:
            context.nrt.incref(builder, A, args[0])
            context.nrt.incref(builder, B, args[1])
        return da._getvalue()

    return aty(A, B), codegen


def _is_arr2(t):
    return isinstance(t, DualArray2Type)


@overload(len, target="cpu")
def _len(a):
    return (lambda a: len(a.A)) if _is_arr2(a) else None


@overload_attribute(DualArray2Type, "shape")
def _shape(a):
    return lambda a: a.A.shape


@overload_attribute(DualArray2Type, "size")
def _size(a):
    return lambda a: a.A.size


@overload_attribute(DualArray2Type, "ndim")
def _ndim(a):
    return lambda a: 1


@overload(operator.getitem, target="cpu")
def _getitem(a, i):
    if not _is_arr2(a):
        return None
    if isinstance(i, types.Integer):
        return lambda a, i: make_dual2(a.A[i], a.B[i])
    if isinstance(i, types.SliceType):
        return lambda a, i: pack_dual2_array(a.A[i], a.B[i])
    return None


@overload(operator.setitem, target="cpu")
def _setitem(a, i, v):
    if not _is_arr2(a) or not isinstance(i, (types.Integer, types.SliceType)):
        return None
    if isinstance(v, Dual2Type) and v.K == a.K:

        def impl(a, i, v):
            a.A[i] = v.a
            a.B[i] = v.b

        return impl
    if isinstance(v, _REAL) or (isinstance(v, DualType) and v.K == a.K):

        def impl(a, i, v):
            a.A[i] = v
            a.B[i] = 0.0

        return impl
    if not isinstance(i, types.SliceType):
        return None
    if _is_arr2(v) and v.K == a.K:

        def impl(a, i, v):
            a.A[i] = v.A
            a.B[i] = v.B

        return impl
    if isinstance(v, DualArrayType) and v.K == a.K:

        def impl(a, i, v):
            a.A[i] = v
            a.B[i] = 0.0

        return impl
    return None


@overload(np.sum, target="cpu")
def _sum(a):
    if _is_arr2(a):

        def impl(a):
            s = make_dual2(np.sum(a.A[:0]), np.sum(a.B[:0]))  # zero of the right type
            for i in range(len(a)):
                s += a[i]
            return s

        return impl
    return None


def _vector(t):
    return (
        _is_arr2(t) or isinstance(t, DualArrayType) or (isinstance(t, types.Array) and t.ndim == 1)
    )


@overload(np.dot, target="cpu")
def _dot(a, b):
    if not (_is_arr2(a) or _is_arr2(b)) or not (_vector(a) and _vector(b)):
        return None
    if len({t.K for t in (a, b) if not isinstance(t, types.Array)}) != 1:
        return None
    first = _is_arr2(a)

    def impl(a, b):
        n = len(a)
        if len(b) != n:
            raise ValueError("np.dot: shapes of the two vectors differ")
        z = (a if first else b)[:0]
        s = make_dual2(np.sum(z.A), np.sum(z.B))
        for i in range(n):
            s += a[i] * b[i]
        return s

    return impl


def _alloc2(K, fill):
    """An njit ``alloc(n)``: a new DualArray2{K} of length n, its four arrays from ``fill``."""

    @njit(inline="always")
    def alloc(n):
        A = pack_dual_array(fill(n), fill((n, K)), 0, K)
        return pack_dual2_array(A, pack_dual_array(fill(n), fill((n, K)), 0, K))

    return alloc


@overload(np.empty_like, target="cpu")
def _empty_like(a):
    if _is_arr2(a):
        alloc = _alloc2(a.K, np.empty)
        return lambda a: alloc(len(a))
    return None


@overload(np.zeros_like, target="cpu")
def _zeros_like(a):
    if _is_arr2(a):
        alloc = _alloc2(a.K, np.zeros)
        return lambda a: alloc(len(a))
    return None


@overload_method(DualArray2Type, "copy")
def _copy(a):
    return lambda a: pack_dual2_array(a.A.copy(), a.B.copy())


@overload(nb_array.similar, target="cpu")
def _similar(y, *like):
    kinds = (y,) + tuple(like)
    ok = (DualArray2Type, DualArrayType, types.Array)
    if not any(_is_arr2(a) for a in kinds) or not all(isinstance(a, ok) for a in kinds):
        return None
    if len({a.K for a in kinds if not isinstance(a, types.Array)}) != 1:
        return None
    alloc = _alloc2(next(a for a in kinds if _is_arr2(a)).K, np.zeros)
    return lambda y, *like: alloc(len(y))


# ---- building and reading second-order dual arrays (compiled and plain Python) -------------


def dual2_array_k(val, eps, dval, deps, tag, tag2, K):
    """Wrap four float arrays as a second-order dual array (views, no copies).

    Parameters
    ----------
    val : ndarray, shape (n,)
        Values.
    eps : ndarray, shape (n, K), rows contiguous
        ε-partials (first-order seeds or results).
    dval : ndarray, shape (n,)
        δ-partials (the direction).
    deps : ndarray, shape (n, K), rows contiguous
        Cross partials ε_k δ.
    tag, tag2 : int
        Tags of the ε and δ differentiations for the numpy-level duals
        (``tag2 > tag``); compiled code ignores them. 0 takes fresh ones.
    K : int
        Number of ε-partials, a compile-time constant in compiled code.

    Returns
    -------
    DualArray2{K} (compiled) or Dual over Dual (plain Python), shape (n,)
    """
    if not tag:
        tag = new_tag()
    if not tag2 or tag2 <= tag:
        tag2 = new_tag()
    a = Dual(val, eps, tag)
    b = Dual(dval[:, None], deps[:, None, :], tag)
    return Dual(a, b, tag2)


@overload(dual2_array_k, prefer_literal=True, target="cpu")
def _dual2_array_k(val, eps, dval, deps, tag, tag2, K):
    if isinstance(K, types.IntegerLiteral):

        def impl(val, eps, dval, deps, tag, tag2, K):
            return pack_dual2_array(
                pack_dual_array(val, eps, 0, K), pack_dual_array(dval, deps, 0, K)
            )

        return impl
    return None


def dual2_parts(d):
    """Return ``(val, eps, dval, deps)`` of a second-order dual array, as float arrays.

    Shapes (n,), (n, K), (n,), (n, K); views where the storage allows.
    """
    return d.val.val, d.val.eps, d.eps.val[:, 0], d.eps.eps[:, 0, :]


@overload(dual2_parts, target="cpu")
def _dual2_parts(d):
    if _is_arr2(d):
        return lambda d: (d.A.val, d.A.eps, d.B.val, d.B.eps)
    return None


def empty_dual2(like, n):
    """Return an uninitialised second-order dual array of length ``n`` shaped as ``like``."""
    K = np.shape(like.val.eps)[-1]
    return dual2_array_k(
        np.empty(n),
        np.empty((n, K)),
        np.empty(n),
        np.empty((n, K)),
        like.val._ad_tag,
        like._ad_tag,
        K,
    )


@overload(empty_dual2, target="cpu")
def _empty_dual2(like, n):
    if _is_arr2(like) and isinstance(n, types.Integer):
        alloc = _alloc2(like.K, np.empty)
        return lambda like, n: alloc(n)
    return None
