"""Scalar operations on ``Dual{K}`` inside numba, generated from :data:`RULES`.

For every rule ``y = f(x_0, ..., x_{r-1})`` and every Python/numpy/math callable
that numba code may use for it (:data:`TARGETS`), an overload computes

    y.val = f(x.val...),   y.eps = sum over dual inputs i of d[i](y, x...) * x_i.eps

with the partials ``d[i]`` of :mod:`sensitivity.ad.rules` compiled on floats and
the products taken under the NaN-safe convention (a zero tangent contributes
exactly zero, see :func:`sensitivity.ad.rules.safe_mul`). Partials of
arguments that are plain numbers are never evaluated. Comparisons and the
value-only primitives of :data:`rules.VALUE_ONLY` act on the values.

Hand-written special cases (:data:`SPECIAL`), each with its reason:

- ``add``, ``subtract``, ``negative``, ``positive``: the partials are the
  constants +-1, so the tangents are added without multiplications or the
  NaN-safe select (identical results, fewer vector instructions).
- ``clip``: three arguments; plain-number bounds are promoted to constant
  duals (their partials are cheap comparisons) instead of generating all seven
  argument mixes. The primal is ``min(max(x, lo), hi)`` (numba has no scalar
  ``np.clip``).
- ``erf``, ``erfc``: the primal is ``math.erf``/``math.erfc``; the rule's
  ``scipy.special`` ufuncs are not numba-compilable.
- ``where``: not overloaded on scalars: compiled code writes ``if``/``else``,
  which gives the same pathwise derivative.

Branches in user code (``if y[i] > c:``) compare values and so give pathwise
derivatives: the derivative of the branch actually taken.

All overloads are registered when this module is imported (a failed
compilation must not hide registrations that come after it).
"""

from __future__ import annotations

import math
import operator

import numpy as np
from numba import njit
from numba.core import types
from numba.extending import overload

from sensitivity.ad.nb_types import (
    DualType,
    as_dual,
    make_dual,
    vadd,
    vneg,
    vsafe_axpy,
    vsafe_scale,
    vsub,
)
from sensitivity.ad.rules import RULES, VALUE_ONLY

__all__ = ["SPECIAL", "TARGETS", "UNSUPPORTED", "VALUE_TARGETS"]

# rule name -> the callables numba code may use for it (besides np.<name>).
TARGETS = {
    "add": (operator.add, operator.iadd, np.add),
    "subtract": (operator.sub, operator.isub, np.subtract),
    "multiply": (operator.mul, operator.imul, np.multiply),
    "divide": (operator.truediv, operator.itruediv, np.divide),
    "power": (operator.pow, operator.ipow, np.power, math.pow),
    "negative": (operator.neg, np.negative),
    "positive": (operator.pos, np.positive),
    "absolute": (abs, np.absolute, np.fabs, math.fabs),
    "sqrt": (np.sqrt, math.sqrt),
    "exp": (np.exp, math.exp),
    "expm1": (np.expm1, math.expm1),
    "log": (np.log, math.log),
    "log1p": (np.log1p, math.log1p),
    "log2": (np.log2, math.log2),
    "log10": (np.log10, math.log10),
    "sin": (np.sin, math.sin),
    "cos": (np.cos, math.cos),
    "tan": (np.tan, math.tan),
    "arcsin": (np.arcsin, math.asin),
    "arccos": (np.arccos, math.acos),
    "arctan": (np.arctan, math.atan),
    "arctan2": (np.arctan2, math.atan2),
    "sinh": (np.sinh, math.sinh),
    "cosh": (np.cosh, math.cosh),
    "tanh": (np.tanh, math.tanh),
    "arcsinh": (np.arcsinh, math.asinh),
    "arccosh": (np.arccosh, math.acosh),
    "arctanh": (np.arctanh, math.atanh),
    "hypot": (np.hypot, math.hypot),
    "minimum": (np.minimum, min),
    "maximum": (np.maximum, max),
    "erf": (math.erf,),
    "erfc": (math.erfc,),
}

SPECIAL = ("add", "subtract", "negative", "positive", "clip", "erf", "erfc")
UNSUPPORTED = {"where": "compiled code branches with if/else (same pathwise derivative)"}

VALUE_TARGETS = {
    "greater": (operator.gt,),
    "greater_equal": (operator.ge,),
    "less": (operator.lt,),
    "less_equal": (operator.le,),
    "equal": (operator.eq,),
    "not_equal": (operator.ne,),
    "floor_divide": (operator.floordiv,),
    "floor": (math.floor,),
    "ceil": (math.ceil,),
    "trunc": (math.trunc,),
    "isfinite": (math.isfinite,),
    "isinf": (math.isinf,),
    "isnan": (math.isnan,),
}

_REAL = (types.Float, types.Integer, types.Boolean)
# Overload bodies use numpy's error model (a partial dividing by zero gives inf,
# then the NaN-safe product decides; numba's default would raise), and the
# partials are inlined into them (one compilation per operation and type, not
# one per partial: first-call latency).
_JIT = {"error_model": "numpy"}


def _is_dual(t):
    return isinstance(t, DualType)


def _is_real(t):
    return isinstance(t, _REAL)


def _targets(name):
    own = getattr(np, name, None)
    extra = TARGETS.get(name, ())
    return tuple(dict.fromkeys(((own,) if own is not None else ()) + extra))


def _clip_primal(x, lo, hi):
    return min(max(x, lo), hi)


_PRIMAL = {"erf": math.erf, "erfc": math.erfc, "clip": njit(_clip_primal)}


def _primal(rule):
    return _PRIMAL.get(rule.name, rule.f)


# ---- generic overloads from a rule ----------------------------------------------------


def _unary(fp, d0):
    def impl(x):
        y = fp(x.val)
        return make_dual(y, vsafe_scale(d0(y, x.val), x.eps))

    return impl


def _binary(fp, d0, d1, ta, tb):
    if _is_dual(ta) and _is_dual(tb):
        if ta.K != tb.K:
            return None

        def impl(a, b):
            y = fp(a.val, b.val)
            e = vsafe_axpy(d0(y, a.val, b.val), a.eps, vsafe_scale(d1(y, a.val, b.val), b.eps))
            return make_dual(y, e)

        return impl
    if _is_dual(ta) and _is_real(tb):

        def impl(a, b):
            y = fp(a.val, b)
            return make_dual(y, vsafe_scale(d0(y, a.val, b), a.eps))

        return impl
    if _is_real(ta) and _is_dual(tb):

        def impl(a, b):
            y = fp(a, b.val)
            return make_dual(y, vsafe_scale(d1(y, a, b.val), b.eps))

        return impl
    return None


@njit(inline="always")
def _pick_a(a, b, c):
    return a


@njit(inline="always")
def _pick_b(a, b, c):
    return b


@njit(inline="always")
def _pick_c(a, b, c):
    return c


def _ternary(fp, d0, d1, d2, ta, tb, tc):
    # Used by clip: numbers are promoted to constant duals (see SPECIAL).
    args = (ta, tb, tc)
    if not any(_is_dual(t) for t in args) or not all(_is_dual(t) or _is_real(t) for t in args):
        return None
    if len({t.K for t in args if _is_dual(t)}) != 1:
        return None
    if _is_dual(ta):
        pick = _pick_a
    elif _is_dual(tb):
        pick = _pick_b
    else:
        pick = _pick_c

    def impl(a, b, c):
        like = pick(a, b, c)
        a_, b_, c_ = as_dual(a, like), as_dual(b, like), as_dual(c, like)
        y = fp(a_.val, b_.val, c_.val)
        e = vsafe_scale(d2(y, a_.val, b_.val, c_.val), c_.eps)
        e = vsafe_axpy(d1(y, a_.val, b_.val, c_.val), b_.eps, e)
        e = vsafe_axpy(d0(y, a_.val, b_.val, c_.val), a_.eps, e)
        return make_dual(y, e)

    return impl


def _register(target, nin, make, unary=_is_dual):
    # ``unary``: which argument types a one-argument overload takes (nb_dual2 passes its own)
    if nin == 1:

        @overload(target, target="cpu", jit_options=_JIT)
        def ov1(x):
            return make(x) if unary(x) else None

    elif nin == 2:

        @overload(target, target="cpu", jit_options=_JIT)
        def ov2(a, b):
            return make(a, b)

    else:

        @overload(target, target="cpu", jit_options=_JIT)
        def ov3(a, b, c):
            return make(a, b, c)


def _register_rule(rule):
    fp = _primal(rule)
    # numpy's error model: a partial that divides by zero gives inf (then the
    # NaN-safe product decides), where numba's default would raise.
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

    for target in _targets(rule.name):
        _register(target, rule.nin, make)


# ---- hand-written linear rules (see SPECIAL) -------------------------------------------


def _make_add(a, b):
    if _is_dual(a) and _is_dual(b):
        return (lambda a, b: make_dual(a.val + b.val, vadd(a.eps, b.eps))) if a.K == b.K else None
    if _is_dual(a) and _is_real(b):
        return lambda a, b: make_dual(a.val + b, a.eps)
    if _is_real(a) and _is_dual(b):
        return lambda a, b: make_dual(a + b.val, b.eps)
    return None


def _make_sub(a, b):
    if _is_dual(a) and _is_dual(b):
        return (lambda a, b: make_dual(a.val - b.val, vsub(a.eps, b.eps))) if a.K == b.K else None
    if _is_dual(a) and _is_real(b):
        return lambda a, b: make_dual(a.val - b, a.eps)
    if _is_real(a) and _is_dual(b):
        return lambda a, b: make_dual(a - b.val, vneg(b.eps))
    return None


def _register_linear():
    for target in _targets("add"):
        _register(target, 2, _make_add)
    for target in _targets("subtract"):
        _register(target, 2, _make_sub)
    for target in _targets("negative"):
        _register(target, 1, lambda x: lambda x: make_dual(-x.val, vneg(x.eps)))
    for target in _targets("positive"):
        _register(target, 1, lambda x: lambda x: x)


# ---- comparisons and value-only primitives ---------------------------------------------


def _value_only(fp, nin):
    if nin == 1:
        return lambda x: lambda x: fp(x.val)

    def make(a, b):
        if _is_dual(a) and _is_dual(b):
            return lambda a, b: fp(a.val, b.val)
        if _is_dual(a) and _is_real(b):
            return lambda a, b: fp(a.val, b)
        if _is_real(a) and _is_dual(b):
            return lambda a, b: fp(a, b.val)
        return None

    return make


def _register_value_only():
    for name, ufunc in VALUE_ONLY.items():
        nin = ufunc.nin
        make = _value_only(ufunc, nin)
        for target in dict.fromkeys((ufunc,) + VALUE_TARGETS.get(name, ())):
            _register(target, nin, make)


def _register_all():
    for name, rule in RULES.items():
        if name in UNSUPPORTED or name in ("add", "subtract", "negative", "positive"):
            continue
        _register_rule(rule)
    _register_linear()
    _register_value_only()


_register_all()
