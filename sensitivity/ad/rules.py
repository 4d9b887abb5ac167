"""The derivative table: one entry per primitive, shared by every mode.

Each :class:`Rule` holds the primal ``f`` (a numpy ufunc, so that complex step
works on it) and one partial per input, ``d[i](y, *x) = df/dx_i``, written from
the inputs ``x`` and the already computed output ``y``. The numpy-level duals
(:mod:`sensitivity.ad.dual`), the tape (:mod:`sensitivity.ad.tape`) and the
numba duals are all generated from :data:`RULES`; no mode keeps a table of its
own.

The partials are plain module-level functions built from numpy ufuncs and
arithmetic only (no branches, no ``np.where``), so that one definition runs on
numpy arrays, on numpy scalars, on the numpy-level duals (for nesting) and
inside numba kernels on floats.

Forward mode applies ``eps_y = sum_i d[i](y, *x) * eps_i`` and reverse mode
``x_bar_i += y_bar * d[i](y, *x)``.

NaN-safe convention
-------------------
A tangent (or cotangent) that is exactly zero contributes exactly zero, even
when the local partial is infinite or NaN, and a partial that is exactly zero
contributes zero even against an infinite cotangent. So d/dx sqrt(x**2) at x = 0 is 0
(the inner tangent 2x is 0, the outer partial 1/(2 sqrt(0)) is inf), where the
plain chain rule would give NaN. A *non-zero* tangent times an infinite
partial still gives inf or NaN: the derivative really does not exist there.
:func:`safe_mul` implements the convention; :func:`sensitivity.debug_nans`
turns non-finite values and derivatives into an error naming the primitive.

Kinks (``abs``, ``minimum``, ``maximum``, ``clip``, ``where``) get one-sided
or zero subgradients, stated per rule; branches in user code give pathwise
derivatives.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# Bump whenever a rule changes: the numba duals stamp their on-disk cache with
# it so that a changed rule never runs stale compiled code.
RULES_VERSION = "1"

_LN2 = float(np.log(2.0))
_LN10 = float(np.log(10.0))
_TWO_OVER_SQRT_PI = float(2.0 / np.sqrt(np.pi))


@dataclass(frozen=True)
class Rule:
    """One differentiable primitive.

    Parameters
    ----------
    name : str
        Key in :data:`RULES` (numpy's name where one exists).
    f : numpy.ufunc or callable
        The primal, elementwise, vectorised over numpy arrays.
    d : tuple of callables or None
        ``d[i](y, *x)``: partial of the output with respect to input ``i``,
        elementwise. ``None`` marks an input that is not differentiated
        (the condition of ``where``).
    domain : tuple of (float, float)
        Per input, an interval on which the rule is smooth and tested.
    analytic : bool
        True if ``f`` extends holomorphically, so that complex step checks it.
    """

    name: str
    f: Callable
    d: tuple
    domain: tuple
    analytic: bool = True
    nin: int = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "nin", len(self.d))
        if len(self.domain) != self.nin:
            raise ValueError(f"rule {self.name!r}: one domain per input is required")


RULES: dict[str, Rule] = {}

# Primitives whose output carries no derivative (comparisons, rounding): the
# modes evaluate them on values and return plain arrays.
VALUE_ONLY: dict[str, Callable] = {
    name: getattr(np, name)
    for name in (
        "greater",
        "greater_equal",
        "less",
        "less_equal",
        "equal",
        "not_equal",
        "logical_and",
        "logical_or",
        "logical_not",
        "logical_xor",
        "isfinite",
        "isinf",
        "isnan",
        "signbit",
        "sign",
        "floor",
        "ceil",
        "trunc",
        "rint",
        "floor_divide",
    )
}


def rule(name, f, *d, domain=None, analytic=True):
    """Register a primitive in :data:`RULES` (see :class:`Rule`)."""
    domain = domain if domain is not None else ((-2.0, 2.0),) * len(d)
    RULES[name] = Rule(name, f, tuple(d), tuple(domain), analytic)


# ---- partials: module-level defs so numba can compile them ---------------------------


def one(y, *x):
    return 1.0  # the modes broadcast tangents to the output's shape


def minus_one(y, *x):
    return -1.0


def d_mul_a(y, a, b):
    return b


def d_mul_b(y, a, b):
    return a


def d_div_a(y, a, b):
    return 1.0 / b


def d_div_b(y, a, b):
    return -y / b


def d_pow_a(y, a, b):
    return b * a ** (b - 1.0)


def d_pow_b(y, a, b):
    # y*log(a), with the 0**b (b > 0) case giving 0 instead of 0*(-inf) = NaN.
    return y * np.log(a + (a == 0.0))


def d_square(y, x):
    return 2.0 * x


def d_reciprocal(y, x):
    return -y * y


def d_abs(y, x):
    return np.sign(x)  # subgradient 0 at x = 0


def d_sqrt(y, x):
    return 0.5 / y


def d_cbrt(y, x):
    return 1.0 / (3.0 * y * y)


def d_exp(y, x):
    return y


def d_exp2(y, x):
    return y * _LN2


def d_expm1(y, x):
    return y + 1.0


def d_log(y, x):
    return 1.0 / x


def d_log1p(y, x):
    return 1.0 / (1.0 + x)


def d_log2(y, x):
    return 1.0 / (x * _LN2)


def d_log10(y, x):
    return 1.0 / (x * _LN10)


def d_sin(y, x):
    return np.cos(x)


def d_cos(y, x):
    return -np.sin(x)


def d_tan(y, x):
    return 1.0 + y * y


def d_arcsin(y, x):
    return 1.0 / np.sqrt(1.0 - x * x)


def d_arccos(y, x):
    return -1.0 / np.sqrt(1.0 - x * x)


def d_arctan(y, x):
    return 1.0 / (1.0 + x * x)


def d_arctan2_a(y, a, b):
    return b / (a * a + b * b)


def d_arctan2_b(y, a, b):
    return -a / (a * a + b * b)


def d_sinh(y, x):
    return np.cosh(x)


def d_cosh(y, x):
    return np.sinh(x)


def d_tanh(y, x):
    return 1.0 - y * y


def d_arcsinh(y, x):
    return 1.0 / np.sqrt(x * x + 1.0)


def d_arccosh(y, x):
    return 1.0 / np.sqrt(x * x - 1.0)


def d_arctanh(y, x):
    return 1.0 / (1.0 - x * x)


def d_hypot_a(y, a, b):
    return a / y


def d_hypot_b(y, a, b):
    return b / y


def d_min_a(y, a, b):
    return 1.0 * (a <= b)  # ties go to the first argument


def d_min_b(y, a, b):
    return 1.0 * (a > b)


def d_max_a(y, a, b):
    return 1.0 * (a >= b)  # ties go to the first argument


def d_max_b(y, a, b):
    return 1.0 * (a < b)


def d_clip_x(y, x, lo, hi):
    return 1.0 * (x >= lo) * (x <= hi)


def d_clip_lo(y, x, lo, hi):
    return 1.0 * (x < lo)


def d_clip_hi(y, x, lo, hi):
    return 1.0 * (x > hi) * (x >= lo)


def d_where_a(y, cond, a, b):
    return 1.0 * cond


def d_where_b(y, cond, a, b):
    return 1.0 - 1.0 * cond


def d_erf(y, x):
    return _TWO_OVER_SQRT_PI * np.exp(-x * x)


def d_erfc(y, x):
    return -_TWO_OVER_SQRT_PI * np.exp(-x * x)


# ---- the table ----------------------------------------------------------------------

_POS = (0.2, 3.0)  # strictly positive: log, sqrt, pow base
_UNIT = (-0.9, 0.9)  # inside (-1, 1): arcsin, arccos, arctanh

rule("add", np.add, one, one)
rule("subtract", np.subtract, one, minus_one)
rule("multiply", np.multiply, d_mul_a, d_mul_b)
rule("divide", np.divide, d_div_a, d_div_b, domain=((-2.0, 2.0), _POS))
rule("power", np.power, d_pow_a, d_pow_b, domain=(_POS, (-2.0, 2.0)))
rule("negative", np.negative, minus_one)
rule("positive", np.positive, one)
rule("square", np.square, d_square)
rule("reciprocal", np.reciprocal, d_reciprocal, domain=(_POS,))
rule("absolute", np.absolute, d_abs, analytic=False)
rule("sqrt", np.sqrt, d_sqrt, domain=(_POS,))
rule("cbrt", np.cbrt, d_cbrt, domain=(_POS,), analytic=False)  # no complex cbrt
rule("exp", np.exp, d_exp)
rule("exp2", np.exp2, d_exp2)
rule("expm1", np.expm1, d_expm1)
rule("log", np.log, d_log, domain=(_POS,))
rule("log1p", np.log1p, d_log1p, domain=((-0.8, 3.0),))
rule("log2", np.log2, d_log2, domain=(_POS,))
rule("log10", np.log10, d_log10, domain=(_POS,))
rule("sin", np.sin, d_sin)
rule("cos", np.cos, d_cos)
rule("tan", np.tan, d_tan, domain=((-1.2, 1.2),))
rule("arcsin", np.arcsin, d_arcsin, domain=(_UNIT,))
rule("arccos", np.arccos, d_arccos, domain=(_UNIT,))
rule("arctan", np.arctan, d_arctan)
rule("arctan2", np.arctan2, d_arctan2_a, d_arctan2_b, domain=((-2.0, 2.0), _POS), analytic=False)
rule("sinh", np.sinh, d_sinh)
rule("cosh", np.cosh, d_cosh)
rule("tanh", np.tanh, d_tanh)
rule("arcsinh", np.arcsinh, d_arcsinh)
rule("arccosh", np.arccosh, d_arccosh, domain=((1.2, 4.0),))
rule("arctanh", np.arctanh, d_arctanh, domain=(_UNIT,))
rule("hypot", np.hypot, d_hypot_a, d_hypot_b, domain=(_POS, _POS), analytic=False)
rule("minimum", np.minimum, d_min_a, d_min_b, analytic=False)
rule("maximum", np.maximum, d_max_a, d_max_b, analytic=False)
rule("fmin", np.fmin, d_min_a, d_min_b, analytic=False)
rule("fmax", np.fmax, d_max_a, d_max_b, analytic=False)
rule(
    "clip",
    np.clip,
    d_clip_x,
    d_clip_lo,
    d_clip_hi,
    domain=((-2.0, 2.0), (-1.5, -0.5), (0.5, 1.5)),
    analytic=False,
)
rule("where", np.where, None, d_where_a, d_where_b, domain=((0.0, 1.0),) * 3, analytic=False)


def _special(name):
    """Return scipy.special's ufunc ``name``, imported on first use: importing scipy.special
    takes ~0.2 s, half the latency budget of a first solve that never calls erf."""
    from scipy import special

    return getattr(special, name)


def erf(x):
    """The error function (``scipy.special.erf``)."""
    return _special("erf")(x)


def erfc(x):
    """The complementary error function (``scipy.special.erfc``)."""
    return _special("erfc")(x)


rule("erf", erf, d_erf)
rule("erfc", erfc, d_erfc)
_SCIPY_UFUNCS = ("erf", "erfc")  # rules whose ufunc lives in the lazily imported scipy.special

# ufunc -> rule, for the __array_ufunc__ dispatch of the array types.
UFUNC_RULES: dict = {r.f: r for r in RULES.values() if isinstance(r.f, np.ufunc)}


def ufunc_rule(ufunc):
    """Return the rule of ``ufunc`` or None; scipy.special's ufuncs are registered the first
    time they reach a differentiated array (scipy.special is imported by then)."""
    rule_ = UFUNC_RULES.get(ufunc)
    if rule_ is None and ufunc.__name__ in _SCIPY_UFUNCS:
        special = sys.modules.get("scipy.special")
        if special is not None and getattr(special, ufunc.__name__, None) is ufunc:
            rule_ = UFUNC_RULES[ufunc] = RULES[ufunc.__name__]
    return rule_


VALUE_ONLY_UFUNCS = frozenset(VALUE_ONLY.values())


def safe_mul(d, t):
    """Multiply a local partial by a tangent under the NaN-safe convention.

    Parameters
    ----------
    d : ndarray or float
        Local partial, broadcastable against ``t``.
    t : ndarray
        Tangent (forward mode) or cotangent (reverse mode).

    Returns
    -------
    ndarray
        ``d * t``, except that entries where either factor is exactly 0 are
        exactly 0 even when the other is infinite or NaN. Forward mode meets
        ``inf * 0`` with the zero in the tangent, reverse mode with the zero in
        the partial (the cotangent has already become infinite), so both
        factors are tested.
    """
    out = d * t
    # The product is non-finite only where a factor is; test the product once
    # and repair only then, so the common path costs one extra pass.
    if not _all_finite(out):
        out = np.where((t == 0) | (d == 0), 0.0, out)
    return out


def _all_finite(a):
    # One summation pass, no temporary: a sum is finite iff every term is,
    # unless finite terms overflow, which only sends us down the (still
    # correct) repair path. On nested duals np.sum/np.isfinite act on values.
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.sum(a)))
