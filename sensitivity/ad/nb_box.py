"""Boxing: numpy-level :class:`~sensitivity.ad.dual.Dual` arrays <-> ``DualArray{K}``.

A 1-D ``Dual`` whose ``val`` is a float64 array (n,) and ``eps`` a float64
array (n, K) with contiguous rows enters compiled code as a ``DualArray{K}``
sharing its memory (in-place writes are seen by the caller), and a
``DualArray{K}`` returned from compiled code comes back as a ``Dual`` with the
same tag. Nested duals (``val`` itself a Dual) and other shapes do not enter
compiled code: numba reports that it cannot type the argument.
"""

from __future__ import annotations

import numpy as np
from numba.core import cgutils, types
from numba.extending import NativeValue, box, overload, typeof_impl, unbox

from sensitivity.ad.dual import Dual
from sensitivity.ad.dual import similar as dual_similar
from sensitivity.ad.nb_array import similar as nb_similar
from sensitivity.ad.nb_types import DualArrayType

__all__ = []


@typeof_impl.register(Dual)
def _typeof_dual(val, c):
    v, e = val.val, val.eps
    ok = (
        isinstance(v, np.ndarray)
        and isinstance(e, np.ndarray)
        and v.ndim == 1
        and e.ndim == 2
        and v.dtype == np.float64
        and e.dtype == np.float64
        and e.shape[0] == v.shape[0]
        and 1 <= e.shape[1] <= 64
        and (e.strides[1] == 8 or e.shape[1] == 1)
    )
    if not ok:
        return None
    return DualArrayType(e.shape[1], typeof_array(v, c), typeof_array(e, c))


def typeof_array(a, c):
    from numba import typeof

    return typeof(a, c.purpose)


@unbox(DualArrayType)
def _unbox_dual_array(typ, obj, c):
    val_obj = c.pyapi.object_getattr_string(obj, "val")
    eps_obj = c.pyapi.object_getattr_string(obj, "eps")
    tag_obj = c.pyapi.object_getattr_string(obj, "_ad_tag")
    val = c.unbox(typ.val_type, val_obj)
    eps = c.unbox(typ.eps_type, eps_obj)
    tag = c.pyapi.long_as_longlong(tag_obj)
    for o in (val_obj, eps_obj, tag_obj):
        c.pyapi.decref(o)
    da = cgutils.create_struct_proxy(typ)(c.context, c.builder)
    da.val = val.value
    da.eps = eps.value
    da.tag = tag
    is_error = c.builder.or_(val.is_error, eps.is_error)
    is_error = c.builder.or_(is_error, cgutils.is_not_null(c.builder, c.pyapi.err_occurred()))
    cleanups = [n.cleanup for n in (val, eps) if n.cleanup is not None]

    def cleanup():
        for fn in reversed(cleanups):
            fn()

    return NativeValue(da._getvalue(), is_error=is_error, cleanup=cleanup if cleanups else None)


@box(DualArrayType)
def _box_dual_array(typ, value, c):
    da = cgutils.create_struct_proxy(typ)(c.context, c.builder, value=value)
    cls = c.pyapi.unserialize(c.pyapi.serialize_object(Dual))
    val_obj = c.box(typ.val_type, da.val)
    eps_obj = c.box(typ.eps_type, da.eps)
    tag_obj = c.pyapi.long_from_longlong(da.tag)
    res = c.pyapi.call_function_objargs(cls, (val_obj, eps_obj, tag_obj))
    for o in (val_obj, eps_obj, tag_obj, cls):
        c.pyapi.decref(o)
    return res


@overload(dual_similar, target="cpu")
def _dual_similar(x, shape=None):
    # sensitivity.similar (numpy-level) used inside compiled code: same as nb.similar(x).
    if isinstance(x, (DualArrayType, types.Array)) and shape in (None, types.none):
        return lambda x, shape=None: nb_similar(x)
    return None
