"""Second-order duals inside numba: ``Dual2{K}`` = a + b δ with a, b both ``Dual{K}``.

A ``Dual2{K}`` is a ``Dual{1}`` over ``Dual{K}``: ``a`` holds the value and K
ε-partials, ``b`` holds the δ-partial and the K cross partials ε_k δ. Seeding
``y = (y0 + S ε) + (u + W ε) δ`` and evaluating ``f`` once gives

    a = f + (f_y S) ε,    b = f_y u + (f_y W + f_yy[u, S]) ε,

that is, a directional derivative of the first-order sensitivities (an exact
Hessian-vector product when ``f`` is a gradient's component).

Every operation is composed from the existing ``Dual{K}`` overloads of
:mod:`.nb_ops`; there are no new intrinsics beyond packing and no second rule
table. For a rule ``y = f(x_0, ...)`` with partials ``d[i]`` of
:data:`sensitivity.ad.rules.RULES` (plain ufunc arithmetic, which compiles on
``Dual{K}``)::

    y.a = f(x_0.a, ...)                          (the Dual{K} overload)
    y.b = sum_i d[i](y.a, x_0.a, ...) * x_i.b    (Dual{K} products, NaN-safe)

The product keeps the NaN-safe convention of :func:`sensitivity.ad.rules.safe_mul`
component by component: a δ-tangent ``x_i.b`` whose value is exactly 0 contributes
exactly 0 to the δ-partial and to the cross partials, whatever the partial is.

Hand-written cases: ``add``, ``subtract``, ``negative``, ``positive`` (tangents
added, as in :mod:`.nb_ops`); ``clip`` promotes every argument to ``Dual2`` (as
``Dual{K}`` does with its constant bounds); ``erf``/``erfc`` use the ``math``
primal. Operands mix freely: ``Dual2`` with a float, an int or a ``Dual{K}``
(a ``Dual{K}`` is a ``Dual2`` with b = 0). Comparisons and the value-only
primitives act on the value, so branches give pathwise derivatives.

The arrays (``DualArray2{K}``) live in :mod:`.nb_dual2_array`. All overloads
are registered when this module is imported.
"""

from __future__ import annotations

import math

from numba import njit
from numba.core import cgutils, types
from numba.extending import (
    intrinsic,
    lower_cast,
    make_attribute_wrapper,
    models,
    overload,
    register_model,
)

from sensitivity.ad import nb_ops
from sensitivity.ad.nb_types import (
    STAMP,
    DualType,
    _check_k,
    make_dual,
    vsafe_axpy,
    vsafe_scale,
    vscale,
    zero_vec,
)
from sensitivity.ad.rules import RULES, VALUE_ONLY

__all__ = ["Dual2Type", "lift2", "make_dual2"]

_REAL = (types.Float, types.Integer, types.Boolean)
_JIT = {"error_model": "numpy"}  # as nb_ops: a partial dividing by zero gives inf
_LINEAR = ("add", "subtract", "negative", "positive")


class Dual2Type(types.Type):
    """Scalar second-order dual ``a + b δ``, ``a`` and ``b`` of type ``Dual{K}``."""

    def __init__(self, K):
        _check_k(K)
        self.K = K
        self.dual = DualType(K)
        super().__init__(name=f"Dual2_{K}[rules={STAMP}]")

    def unify(self, typingctx, other):
        # `s = 0.0; s += y[i]`, `z = y[i] if c else p[0]` with p a Dual{K} array
        if isinstance(other, _REAL):
            return self
        if isinstance(other, (DualType, Dual2Type)) and other.K == self.K:
            return self
        return None

    def can_convert_from(self, typingctx, other):
        if isinstance(other, _REAL):
            return types.Conversion.safe
        if isinstance(other, DualType) and other.K == self.K:
            return types.Conversion.safe
        return None


@register_model(Dual2Type)
class _Dual2Model(models.StructModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, [("a", fe_type.dual), ("b", fe_type.dual)])


make_attribute_wrapper(Dual2Type, "a", "a")
make_attribute_wrapper(Dual2Type, "b", "b")


@intrinsic
def make_dual2(typingctx, a, b):
    """Build a ``Dual2{K}`` from two ``Dual{K}`` (value part and δ part)."""
    if isinstance(a, DualType) and a == b:
        d2 = Dual2Type(a.K)

        def codegen(context, builder, sig, args):
            d = cgutils.create_struct_proxy(d2)(context, builder)
            d.a = args[0]
            d.b = args[1]
            return d._getvalue()

        return d2(a, b), codegen
    return None


def _cast_to_dual2(context, builder, fromty, toty, val):
    dty = toty.dual
    d = cgutils.create_struct_proxy(toty)(context, builder)
    d.a = context.cast(builder, val, fromty, dty)
    d.b = context.cast(builder, context.get_constant(types.float64, 0.0), types.float64, dty)
    return d._getvalue()


@lower_cast(types.Float, Dual2Type)
@lower_cast(types.Integer, Dual2Type)
@lower_cast(types.Boolean, Dual2Type)
def _number_to_dual2(context, builder, fromty, toty, val):
    return _cast_to_dual2(context, builder, fromty, toty, val)


@lower_cast(DualType, Dual2Type)
def _dual_to_dual2(context, builder, fromty, toty, val):
    if fromty.K != toty.K:
        raise TypeError(f"cannot convert {fromty} to {toty}: different numbers of partials")
    return _cast_to_dual2(context, builder, fromty, toty, val)


@lower_cast(Dual2Type, Dual2Type)
def _dual2_to_dual2(context, builder, fromty, toty, val):
    if fromty.K != toty.K:
        raise TypeError(f"cannot convert {fromty} to {toty}: different numbers of partials")
    return val


def _is2(t):
    return isinstance(t, Dual2Type)


def _is1(t):
    return isinstance(t, DualType)


def _is_real(t):
    return isinstance(t, _REAL)


def _operand(t, K):
    """True if ``t`` may meet a ``Dual2{K}`` (a number, a Dual{K} or a Dual2{K})."""
    return _is_real(t) or ((_is1(t) or _is2(t)) and t.K == K)


def _mixes(*args):
    """True if at least one of the types is a Dual2 and all may meet it."""
    twos = [t for t in args if _is2(t)]
    return bool(twos) and all(_operand(t, twos[0].K) for t in args)


# ---- helpers, overloaded per operand kind -----------------------------------------------


def lift2(x, like):
    """``x`` (number, Dual{K} or Dual2{K}) as a ``Dual2`` with the K of ``like`` (compiled)."""
    raise NotImplementedError("lift2 runs only in compiled code")


@overload(lift2, target="cpu")
def _lift2(x, like):
    if not _is2(like):
        return None
    if _is2(x):
        return lambda x, like: x
    if _is1(x):
        return lambda x, like: make_dual2(x, make_dual(0.0, zero_vec(like.a)))
    if _is_real(x):
        return lambda x, like: make_dual2(
            make_dual(x, zero_vec(like.a)), make_dual(0.0, zero_vec(like.a))
        )
    return None


def low(x):
    """The value part of ``x``: ``x.a`` for a Dual2, ``x`` itself otherwise (compiled)."""
    raise NotImplementedError("low runs only in compiled code")


@overload(low, target="cpu")
def _low(x):
    return (lambda x: x.a) if _is2(x) else (lambda x: x)


def tmul(d, t):
    """Partial ``d`` (float or Dual{K}) times δ-tangent ``t`` (Dual{K}), NaN-safe (compiled)."""
    raise NotImplementedError("tmul runs only in compiled code")


@overload(tmul, target="cpu", jit_options=_JIT)
def _tmul(d, t):
    # Component by component as rules.safe_mul: a zero tangent value kills the
    # value and the partial's ε-part; zero cross tangents are handled by vsafe_*.
    if not _is1(t):
        return None
    if _is1(d):

        def impl(d, t):
            tv = t.val
            if tv == 0.0:
                return make_dual(0.0, vsafe_scale(d.val, t.eps))
            return make_dual(d.val * tv, vsafe_axpy(d.val, t.eps, vscale(tv, d.eps)))

        return impl
    if _is_real(d):

        def impl(d, t):
            tv = t.val
            v = d * tv if tv != 0.0 else 0.0
            return make_dual(v, vsafe_scale(d, t.eps))

        return impl
    return None


# ---- generic overloads from a rule ---------------------------------------------------------


def _unary(fp, d0):
    def impl(x):
        ya = fp(x.a)
        return make_dual2(ya, tmul(d0(ya, x.a), x.b))

    return impl


def _binary(fp, d0, d1, ta, tb):
    if not _mixes(ta, tb):
        return None
    if _is2(ta) and _is2(tb):

        def impl(a, b):
            ya = fp(a.a, b.a)
            return make_dual2(ya, tmul(d0(ya, a.a, b.a), a.b) + tmul(d1(ya, a.a, b.a), b.b))

        return impl
    if _is2(ta):

        def impl(a, b):
            ya = fp(a.a, b)
            return make_dual2(ya, tmul(d0(ya, a.a, b), a.b))

        return impl

    def impl(a, b):
        ya = fp(a, b.a)
        return make_dual2(ya, tmul(d1(ya, a, b.a), b.b))

    return impl


def _ternary(fp, d0, d1, d2, ta, tb, tc):
    # clip: every argument promoted to Dual2 (see the module docstring)
    if not _mixes(ta, tb, tc):
        return None
    pick = nb_ops._pick_a if _is2(ta) else (nb_ops._pick_b if _is2(tb) else nb_ops._pick_c)

    def impl(a, b, c):
        like = pick(a, b, c)
        a_, b_, c_ = lift2(a, like), lift2(b, like), lift2(c, like)
        ya = fp(a_.a, b_.a, c_.a)
        yb = tmul(d0(ya, a_.a, b_.a, c_.a), a_.b)
        yb = yb + tmul(d1(ya, a_.a, b_.a, c_.a), b_.b)
        yb = yb + tmul(d2(ya, a_.a, b_.a, c_.a), c_.b)
        return make_dual2(ya, yb)

    return impl


def _register(target, nin, make):
    nb_ops._register(target, nin, make, unary=_is2)


_PRIMAL = {"erf": math.erf, "erfc": math.erfc}  # the Dual{K} overloads' primals


def _register_rule(rule):
    fp = _PRIMAL.get(rule.name, rule.f)
    ds = tuple(njit(inline="always", error_model="numpy")(d) for d in rule.d)
    if rule.nin == 1:

        def make(x, fp=fp, ds=ds):
            return _unary(fp, ds[0])

    elif rule.nin == 2:

        def make(a, b, fp=fp, ds=ds):
            return _binary(fp, ds[0], ds[1], a, b)

    else:

        def make(a, b, c, fp=fp, ds=ds):
            return _ternary(fp, ds[0], ds[1], ds[2], a, b, c)

    for target in nb_ops._targets(rule.name):
        _register(target, rule.nin, make)


# ---- hand-written linear rules ----------------------------------------------------------------


def _make_add(a, b):
    if not _mixes(a, b):
        return None
    if _is2(a) and _is2(b):
        return lambda a, b: make_dual2(a.a + b.a, a.b + b.b)
    if _is2(a):
        return lambda a, b: make_dual2(a.a + b, a.b)
    return lambda a, b: make_dual2(a + b.a, b.b)


def _make_sub(a, b):
    if not _mixes(a, b):
        return None
    if _is2(a) and _is2(b):
        return lambda a, b: make_dual2(a.a - b.a, a.b - b.b)
    if _is2(a):
        return lambda a, b: make_dual2(a.a - b, a.b)
    return lambda a, b: make_dual2(a - b.a, -b.b)


def _register_linear():
    for target in nb_ops._targets("add"):
        _register(target, 2, _make_add)
    for target in nb_ops._targets("subtract"):
        _register(target, 2, _make_sub)
    for target in nb_ops._targets("negative"):
        _register(target, 1, lambda x: lambda x: make_dual2(-x.a, -x.b))
    for target in nb_ops._targets("positive"):
        _register(target, 1, lambda x: lambda x: x)


# ---- comparisons and value-only primitives: on the value part ------------------------------


def _value_only(fp, nin):
    if nin == 1:
        return lambda x: lambda x: fp(x.a)

    def make(a, b):
        if not _mixes(a, b):
            return None
        return lambda a, b: fp(low(a), low(b))

    return make


def _register_value_only():
    for name, ufunc in VALUE_ONLY.items():
        make = _value_only(ufunc, ufunc.nin)
        for target in dict.fromkeys((ufunc,) + nb_ops.VALUE_TARGETS.get(name, ())):
            _register(target, ufunc.nin, make)


def _register_all():
    # Each registration only records an overload template (nothing compiles
    # here), so one failing later cannot hide the ones before it.
    for name, rule in RULES.items():
        if name in nb_ops.UNSUPPORTED or name in _LINEAR:
            continue
        _register_rule(rule)
    _register_linear()
    _register_value_only()


_register_all()
