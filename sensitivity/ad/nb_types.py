"""numba types of the compiled duals, their data models and vector intrinsics.

Layout
------
``Dual{K}`` is a value type passed by value: an LLVM struct
``{double val, <K x double> eps}``. ``DualArray{K}`` is a container of two
numpy arrays, ``val`` (n,) and ``eps`` (n, K) with contiguous rows, plus the
differentiation tag of the numpy-level :class:`sensitivity.ad.dual.Dual` it
came from. ``y[i]`` loads row ``i`` of ``eps`` as one ``<K x double>`` vector.

Why explicit vectors: numba (0.68) runs LLVM without the SLP vectoriser, so
scalar code for K partials stays scalar and, at K >= 4, LLVM stops inlining
the right-hand side (11-26x the float cost on Lotka-Volterra in the prototype
of issue 3). The small intrinsics below emit ``<K x double>`` instructions
directly, which LLVM lowers to AVX/SSE registers whatever the optimiser does.

Cache stamp
-----------
numba's on-disk cache does not track dependencies, so a cached kernel would
keep the old derivative code after a rule changes. The *names* of the dual
types carry :data:`STAMP` (the rule table's version plus a hash of the source
of the compiled-dual modules); every cached signature that involves a dual
type therefore changes, and misses, when either changes.
"""

from __future__ import annotations

import hashlib
import operator
import os

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.imputils import lower_builtin
from numba.core.typing.templates import AbstractTemplate, infer_global, signature
from numba.extending import (
    intrinsic,
    lower_cast,
    make_attribute_wrapper,
    models,
    register_model,
)

from sensitivity.ad import rules

KMAX = 64  # largest number of partials a dual type may carry


def _source_hash():
    h = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in (
        "rules.py",
        "nb_types.py",
        "nb_ops.py",
        "nb_array.py",
        "nb_box.py",
        "nb.py",
        "nb_dual2.py",
        "nb_dual2_array.py",
    ):
        path = os.path.join(here, name)
        if os.path.exists(path):
            with open(path, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()[:10]


# Stamp written into the dual type names (hence into every cache index key).
STAMP = f"{rules.RULES_VERSION}.{_source_hash()}"


def _check_k(K):
    if not (isinstance(K, int) and 1 <= K <= KMAX):
        raise ValueError(f"number of partials K must be an int in [1, {KMAX}], got {K!r}")


class VecType(types.Type):
    """``<K x double>``: the partials of one dual, held in a vector register."""

    def __init__(self, K):
        _check_k(K)
        self.K = K
        super().__init__(name=f"Vec{K}")


class DualType(types.Type):
    """Scalar dual number with ``K`` partials (a value type)."""

    def __init__(self, K):
        _check_k(K)
        self.K = K
        self.vec = VecType(K)
        super().__init__(name=f"Dual{K}[rules={STAMP}]")  # the key is the name

    def unify(self, typingctx, other):
        # `s = 0.0; s += y[i]` and `z = y[i] if c else 0.0` unify to a dual.
        if isinstance(other, (types.Float, types.Integer, types.Boolean)):
            return self
        if isinstance(other, DualType) and other.K == self.K:
            return self
        return None

    def can_convert_from(self, typingctx, other):
        if isinstance(other, (types.Float, types.Integer, types.Boolean)):
            return types.Conversion.safe
        return None


class DualArrayType(types.Type):
    """``DualArray{K}``: values (n,) and partials (n, K), rows contiguous."""

    def __init__(self, K, val_type=None, eps_type=None):
        _check_k(K)
        self.K = K
        self.val_type = val_type if val_type is not None else types.float64[::1]
        self.eps_type = eps_type if eps_type is not None else types.float64[:, ::1]
        self.dual = DualType(K)
        self.vec = VecType(K)
        # Stored on the instance: a type unpickled from numba's cache keeps the
        # stamp it was compiled with, so it never equals a type of a newer stamp.
        self.stamp = STAMP
        lay = self.val_type.layout + self.eps_type.layout
        super().__init__(name=f"DualArray{K}[{lay},rules={STAMP}]")

    @property
    def key(self):
        # getattr: types pickled by older versions may lack the attribute; they
        # then never match (a cache miss, not an error).
        return (self.K, self.val_type, self.eps_type, getattr(self, "stamp", None))

    @property
    def mutable(self):
        return True


class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(ir.DoubleType(), fe_type.K))


register_model(VecType)(_VecModel)


@register_model(DualType)
class _DualModel(models.StructModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, [("val", types.float64), ("eps", fe_type.vec)])


@register_model(DualArrayType)
class _DualArrayModel(models.StructModel):
    def __init__(self, dmm, fe_type):
        members = [("val", fe_type.val_type), ("eps", fe_type.eps_type), ("tag", types.int64)]
        super().__init__(dmm, fe_type, members)


make_attribute_wrapper(DualType, "val", "val")
make_attribute_wrapper(DualType, "eps", "eps")
make_attribute_wrapper(DualArrayType, "val", "val")
make_attribute_wrapper(DualArrayType, "eps", "eps")
make_attribute_wrapper(DualArrayType, "tag", "tag")


_SCALAR = (types.Float, types.Integer, types.Boolean)


def _vty(K):
    return ir.VectorType(ir.DoubleType(), K)


def _splat(builder, x, K):
    vec = ir.Constant(_vty(K), ir.Undefined)
    vec = builder.insert_element(vec, x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(ir.IntType(32), K), [0] * K))


def _zero_vec(K):
    return ir.Constant(_vty(K), [0.0] * K)


# ---- vector intrinsics ---------------------------------------------------------------


@intrinsic
def vadd(typingctx, a, b):
    """a + b, elementwise on two vectors."""
    if isinstance(a, VecType) and a == b:

        def codegen(context, builder, sig, args):
            return builder.fadd(args[0], args[1])

        return a(a, b), codegen
    return None


@intrinsic
def vsub(typingctx, a, b):
    """a - b, elementwise on two vectors."""
    if isinstance(a, VecType) and a == b:

        def codegen(context, builder, sig, args):
            return builder.fsub(args[0], args[1])

        return a(a, b), codegen
    return None


@intrinsic
def vneg(typingctx, a):
    """-a, elementwise."""
    if isinstance(a, VecType):

        def codegen(context, builder, sig, args):
            return builder.fneg(args[0])

        return a(a), codegen
    return None


@intrinsic
def vscale(typingctx, s, a):
    """s * a for a float s and a vector a (plain IEEE product)."""
    if isinstance(a, VecType) and isinstance(s, _SCALAR):

        def codegen(context, builder, sig, args):
            d = context.cast(builder, args[0], s, types.float64)
            return builder.fmul(_splat(builder, d, a.K), args[1])

        return a(s, a), codegen
    return None


def _safe_scale(builder, d, v, K):
    # NaN-safe convention of rules.safe_mul, forward clause: where the tangent is
    # exactly 0 the product is exactly 0, even if the partial d is inf or NaN.
    # One vector compare and one blend; measured (benchmarks/nb_duals.py, K = 4)
    # cheaper than testing d first: scalar finiteness test + two blends cost
    # Lotka-Volterra 1.5x instead of 1.2x the float time, a cold out-of-line
    # repair 3.7x. (The reverse clause, a zero partial against an infinite
    # cotangent, does not arise in forward mode except after an infinite
    # tangent, i.e. a derivative that did not exist upstream.)
    prod = builder.fmul(_splat(builder, d, K), v)
    is_zero = builder.fcmp_ordered("==", v, _zero_vec(K))
    return builder.select(is_zero, _zero_vec(K), prod)


@intrinsic
def vsafe_scale(typingctx, s, a):
    """s * a under the NaN-safe convention (zero tangent -> zero, always)."""
    if isinstance(a, VecType) and isinstance(s, _SCALAR):

        def codegen(context, builder, sig, args):
            d = context.cast(builder, args[0], s, types.float64)
            return _safe_scale(builder, d, args[1], a.K)

        return a(s, a), codegen
    return None


@intrinsic
def vsafe_axpy(typingctx, s, a, b):
    """s * a + b, the product under the NaN-safe convention."""
    if isinstance(a, VecType) and a == b and isinstance(s, _SCALAR):

        def codegen(context, builder, sig, args):
            d = context.cast(builder, args[0], s, types.float64)
            return builder.fadd(_safe_scale(builder, d, args[1], a.K), args[2])

        return a(s, a, a), codegen
    return None


@intrinsic
def vget(typingctx, a, j):
    """Partial ``j`` of a vector, as a float."""
    if isinstance(a, VecType) and isinstance(j, types.Integer):

        def codegen(context, builder, sig, args):
            idx = builder.trunc(args[1], ir.IntType(32)) if j.bitwidth > 32 else args[1]
            return builder.extract_element(args[0], idx)

        return types.float64(a, j), codegen
    return None


@intrinsic
def vcopy(typingctx, dst, a, src, b, k):
    """``dst[a:a+k] = src[b:b+k]`` as one ``<k x double>`` load and store (``k`` literal;
    float64 1-D C arrays, bounds not checked)."""
    arrays = (dst, src)
    ok = all(isinstance(x, types.Array) and x.ndim == 1 and x.layout == "C" for x in arrays)
    ok = ok and dst.dtype == src.dtype == types.float64 and dst.mutable
    ok = ok and isinstance(a, types.Integer) and isinstance(b, types.Integer)
    if not (ok and isinstance(k, types.IntegerLiteral) and 1 <= k.literal_value <= KMAX):
        return None

    def codegen(context, builder, sig, args):
        vp = _vty(k.literal_value).as_pointer()
        ptrs = []
        for arr, aty, off, oty in ((args[0], dst, args[1], a), (args[2], src, args[3], b)):
            data = context.make_array(aty)(context, builder, arr).data
            off = context.cast(builder, off, oty, types.intp)
            ptrs.append(builder.bitcast(builder.gep(data, [off], inbounds=True), vp))
        builder.store(builder.load(ptrs[1], align=8), ptrs[0], align=8)
        return context.get_dummy_value()

    return types.void(dst, a, src, b, k), codegen


@intrinsic
def make_dual(typingctx, val, vec):
    """Build a ``Dual{K}`` from a float value and a ``<K x double>`` vector."""
    if isinstance(vec, VecType) and isinstance(val, (types.Float, types.Integer)):
        dty = DualType(vec.K)

        def codegen(context, builder, sig, args):
            v = context.cast(builder, args[0], sig.args[0], types.float64)
            d = cgutils.create_struct_proxy(dty)(context, builder)
            d.val = v
            d.eps = args[1]
            return d._getvalue()

        return dty(val, vec), codegen
    return None


@intrinsic
def zero_vec(typingctx, like):
    """A zero vector with as many partials as ``like`` (a dual, vec or dual array)."""
    if isinstance(like, (DualType, DualArrayType, VecType)):
        vt = like if isinstance(like, VecType) else like.vec

        def codegen(context, builder, sig, args):
            return _zero_vec(vt.K)

        return vt(like), codegen
    return None


@intrinsic
def as_dual(typingctx, x, like):
    """``x`` (float or dual) as a dual with the partials of ``like``'s type."""
    if not isinstance(like, (DualType, DualArrayType)):
        return None
    dty = like if isinstance(like, DualType) else like.dual
    if isinstance(x, DualType):
        if x.K != dty.K:
            return None

        def codegen(context, builder, sig, args):
            return args[0]

        return dty(x, like), codegen
    if isinstance(x, (types.Float, types.Integer, types.Boolean)):

        def codegen(context, builder, sig, args):
            return _const_dual(context, builder, args[0], sig.args[0], dty)

        return dty(x, like), codegen
    return None


def _const_dual(context, builder, x, xty, dty):
    d = cgutils.create_struct_proxy(dty)(context, builder)
    d.val = context.cast(builder, x, xty, types.float64)
    d.eps = _zero_vec(dty.K)
    return d._getvalue()


@lower_cast(types.Float, DualType)
@lower_cast(types.Integer, DualType)
@lower_cast(types.Boolean, DualType)
def _number_to_dual(context, builder, fromty, toty, val):
    return _const_dual(context, builder, val, fromty, toty)


@lower_cast(DualType, DualType)
def _dual_to_dual(context, builder, fromty, toty, val):
    if fromty.K != toty.K:
        raise TypeError(f"cannot convert {fromty} to {toty}: different numbers of partials")
    return val


# ---- rows of a DualArray ---------------------------------------------------------------


def _row_ptr(context, builder, aty, arr, idx):
    # pointer to row idx (an intp, already wrapped) of arr.eps, as <K x double>*
    da = cgutils.create_struct_proxy(aty)(context, builder, value=arr)
    eps = context.make_array(aty.eps_type)(context, builder, value=da.eps)
    if aty.eps_type.layout == "C":
        # Rows of K contiguous partials (dual_array_k checks eps.shape[1] == K): a
        # compile-time row stride lets LLVM address y[i-1], y[i], y[i+1] off one
        # pointer instead of multiplying by the run-time stride for each. The offset
        # counts doubles, not vectors: a <3 x double> is padded to 32 bytes.
        off = builder.mul(idx, ir.Constant(idx.type, aty.K))
        ptr = builder.gep(eps.data, [off], inbounds=True)
    else:
        zero = ir.Constant(ir.IntType(64), 0)
        ptr = cgutils.get_item_pointer(
            context, builder, aty.eps_type, eps, [idx, zero], wraparound=False
        )
    return builder.bitcast(ptr, _vty(aty.K).as_pointer())


# ---- y[i] and y[i] = x, lowered in the caller's own IR ------------------------------
# Not @overload: an overload is compiled (and optimised) as a function of its own
# before LLVM inlines it, which turns the negative-index wrap into branch-free bit
# arithmetic that LLVM can no longer prove dead in the caller's loop; in a stencil
# that cost about 6 instructions per y[i +- 1] (benchmarks/nb_duals.py, issue 3).
# Emitted here, as numba emits float-array indexing, the wrap is a select on the
# caller's loop index, and LLVM drops it where the loop bounds rule out i < 0.


def _wrapped_index(context, builder, aty, arr, i, ity):
    da = cgutils.create_struct_proxy(aty)(context, builder, value=arr)
    val = context.make_array(aty.val_type)(context, builder, value=da.val)
    idx = context.cast(builder, i, ity, types.intp)
    if ity.signed:
        n = builder.extract_value(val.shape, 0)
        neg = builder.icmp_signed("<", idx, ir.Constant(idx.type, 0))
        idx = builder.select(neg, builder.add(idx, n), idx)
    ptr = cgutils.get_item_pointer(context, builder, aty.val_type, val, [idx], wraparound=False)
    return idx, ptr


@infer_global(operator.getitem)
class _DualItem(AbstractTemplate):
    def generic(self, args, kws):
        if len(args) == 2 and isinstance(args[0], DualArrayType):
            if isinstance(args[1], types.Integer):
                return signature(args[0].dual, *args)
        return None


@infer_global(operator.setitem)
class _DualSetItem(AbstractTemplate):
    def generic(self, args, kws):
        if len(args) != 3 or not isinstance(args[0], DualArrayType):
            return None
        a, i, v = args
        if not isinstance(i, types.Integer):
            return None
        if (isinstance(v, DualType) and v.K == a.K) or isinstance(v, _SCALAR):
            return signature(types.none, a, i, v)
        return None


@lower_builtin(operator.getitem, DualArrayType, types.Integer)
def _dual_item(context, builder, sig, args):
    aty, ity = sig.args
    idx, vptr = _wrapped_index(context, builder, aty, args[0], args[1], ity)
    d = cgutils.create_struct_proxy(aty.dual)(context, builder)
    d.val = builder.load(vptr)
    d.eps = builder.load(_row_ptr(context, builder, aty, args[0], idx), align=8)
    return d._getvalue()


@lower_builtin(operator.setitem, DualArrayType, types.Integer, types.Any)
def _dual_set_item(context, builder, sig, args):
    aty, ity, vty = sig.args
    idx, vptr = _wrapped_index(context, builder, aty, args[0], args[1], ity)
    if isinstance(vty, DualType):
        d = cgutils.create_struct_proxy(vty)(context, builder, value=args[2])
        v, e = d.val, d.eps
    else:
        v, e = context.cast(builder, args[2], vty, types.float64), _zero_vec(aty.K)
    builder.store(v, vptr)
    builder.store(e, _row_ptr(context, builder, aty, args[0], idx), align=8)
    return context.get_dummy_value()


@intrinsic
def pack_dual_array(typingctx, val, eps, tag, k):
    """Build a ``DualArray{K}`` from ``val`` (n,), ``eps`` (n, K) and a tag; K literal."""
    if not isinstance(k, types.IntegerLiteral):
        return None
    ok = (
        isinstance(val, types.Array)
        and isinstance(eps, types.Array)
        and val.ndim == 1
        and eps.ndim == 2
        and val.dtype == types.float64
        and eps.dtype == types.float64
        and isinstance(tag, types.Integer)
    )
    if not ok:
        return None
    aty = DualArrayType(k.literal_value, val, eps)

    def codegen(context, builder, sig, args):
        da = cgutils.create_struct_proxy(aty)(context, builder)
        da.val = args[0]
        da.eps = args[1]
        da.tag = context.cast(builder, args[2], tag, types.int64)
        if context.enable_nrt:
            context.nrt.incref(builder, val, args[0])
            context.nrt.incref(builder, eps, args[1])
        return da._getvalue()

    return aty(val, eps, tag, k), codegen
