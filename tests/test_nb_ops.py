"""Scalar dual operations in numba, one test per rule of RULES and per callable.

Each generated overload is compiled on ``Dual{3}`` in every argument mix and its
partials are compared with complex step (analytic rules) or 4th-order central
differences of the rule's primal, inside the rule's domain: an independent
check of both the rule table and the generated code.
"""

import math
import operator

import numpy as np
import pytest
from numba import njit

from sensitivity.ad import nb
from sensitivity.ad.nb_ops import SPECIAL, TARGETS, UNSUPPORTED, _targets
from sensitivity.ad.rules import RULES

K = 3
RNG_SEED = 7


def _cases():
    out = []
    for name, rule in RULES.items():
        if name in UNSUPPORTED:
            continue
        for target in _targets(name):
            label = getattr(target, "__name__", str(target))
            out.append(pytest.param(name, target, id=f"{name}-{label}"))
    return out


def _point(rule, rng):
    return [rng.uniform(lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo)) for lo, hi in rule.domain]


def _reference(rule, x, dirs):
    """Directional derivative sum_i df/dx_i * dirs[i] (dirs[i] of shape (K,))."""
    f = rule.f
    total = np.zeros(K)
    for i, di in enumerate(dirs):
        if di is None:
            continue
        if rule.analytic:
            h = 1e-30
            xc = [complex(v) for v in x]
            xc[i] += 1j * h
            g = np.imag(f(*xc)) / h
        else:
            h = 1e-4
            vals = []
            for s in (-2, -1, 1, 2):
                xs = list(x)
                xs[i] += s * h
                vals.append(f(*xs))
            g = (vals[0] - 8 * vals[1] + 8 * vals[2] - vals[3]) / (12 * h)
        total += g * di
    return total


def _driver(target, nin, mask):
    # mask[i]: argument i is a dual (True) or a plain float (False).
    @njit
    def run(x, E):
        xs = nb.dual_array_k(x, E, 0, K)
        a = xs[0] if mask[0] else x[0]
        if nin == 1:
            y = target(a)
        else:
            b = xs[1] if mask[1] else x[1]
            if nin == 2:
                y = target(a, b)
            else:
                c = xs[2] if mask[2] else x[2]
                y = target(a, b, c)
        out = nb.dual_array_k(np.zeros(1), np.zeros((1, K)), 0, K)
        out[0] = y
        return out.val[0], out.eps[0].copy()

    return run


def _masks(nin):
    if nin == 1:
        return [(True,)]
    if nin == 2:
        return [(True, True), (True, False), (False, True)]
    return [(True, False, False), (True, True, True), (False, True, False)]


@pytest.mark.parametrize("name, target", _cases())
def test_rule_target(name, target):
    rule = RULES[name]
    rng = np.random.default_rng(RNG_SEED)
    x = _point(rule, rng)
    if name == "power" and target is math.pow:
        x[0] = abs(x[0]) + 0.2
    E = rng.standard_normal((rule.nin, K))
    for mask in _masks(rule.nin):
        val, eps = _driver(target, rule.nin, mask)(np.array(x), E)
        dirs = [E[i] if mask[i] else None for i in range(rule.nin)]
        np.testing.assert_allclose(val, rule.f(*x), rtol=1e-14, atol=1e-15)
        ref = _reference(rule, x, dirs)
        tol = 1e-12 if rule.analytic else 1e-7
        np.testing.assert_allclose(eps, ref, rtol=tol, atol=tol, err_msg=f"{name} {mask}")


def test_every_rule_has_a_target():
    for name in RULES:
        assert name in UNSUPPORTED or _targets(name), name
    assert set(SPECIAL) <= set(RULES)
    assert set(TARGETS) <= set(RULES)


@njit
def _nan_safe(x):
    xs = nb.dual_array_k(x, np.array([[1.0, 0.0], [0.0, 0.0], [np.inf, 1.0]]), 0, 2)
    out = nb.dual_array_k(np.zeros(4), np.zeros((4, 2)), 0, 2)
    out[0] = np.sqrt(xs[1] * xs[1])  # inner tangent 0, outer partial inf
    out[1] = np.sqrt(xs[0])  # at 0 with a nonzero tangent: inf
    out[2] = xs[1] ** 0.5 + xs[0]  # d pow / d base = inf at 0, tangent 0
    out[3] = 0.0 * xs[2]  # partial 0 against an infinite tangent: NaN (see nb_types)
    return out.eps.copy()


def test_nan_safe_convention():
    eps = _nan_safe(np.array([0.0, 0.0, 1.0]))
    np.testing.assert_array_equal(eps[0], [0.0, 0.0])
    assert np.isinf(eps[1, 0]) and eps[1, 1] == 0.0
    np.testing.assert_array_equal(eps[2], [1.0, 0.0])
    assert np.isnan(eps[3, 0]) and eps[3, 1] == 0.0


@njit
def _comparisons(x):
    xs = nb.dual_array_k(x, np.eye(2), 0, 2)
    a, b = xs[0], xs[1]
    return (
        a < b,
        a <= 1.0,
        2.0 > a,
        a >= b,
        a == a,
        a != b,
        math.floor(b),
        np.sign(a),
        math.isnan(a),
        np.isfinite(b),
        a // 0.5,
    )


def test_comparisons_and_value_only():
    r = _comparisons(np.array([0.75, 1.5]))
    assert r == (True, True, True, False, True, True, 1, 1.0, False, True, 1.0)


@njit
def _inplace(x):
    xs = nb.dual_array_k(x, np.eye(2), 0, 2)
    a = xs[0]
    a += xs[1]
    a *= xs[1]
    a -= 1.0
    a /= 2.0
    a **= 2
    s = 0.0
    for i in range(2):
        s += xs[i] * xs[i]  # a float accumulator becomes a dual
    z = xs[0] if x[0] > 10.0 else 3.0  # unification of dual and float
    out = nb.dual_array_k(np.zeros(3), np.zeros((3, 2)), 0, 2)
    out[0] = a
    out[1] = s
    out[2] = z
    return out.val.copy(), out.eps.copy()


def test_inplace_operators_and_unification():
    x = np.array([0.5, 1.5])
    val, eps = _inplace(x)
    a = ((x[0] + x[1]) * x[1] - 1.0) / 2.0
    da = np.array([x[1], x[0] + 2 * x[1]]) / 2.0
    np.testing.assert_allclose(val, [a**2, x @ x, 3.0])
    np.testing.assert_allclose(eps[0], 2 * a * da)
    np.testing.assert_allclose(eps[1], 2 * x)
    np.testing.assert_array_equal(eps[2], [0.0, 0.0])


def test_int_operands():
    @njit
    def run(x):
        xs = nb.dual_array_k(x, np.ones((1, 1)), 0, 1)
        out = nb.dual_array_k(np.zeros(1), np.zeros((1, 1)), 0, 1)
        out[0] = 2 * xs[0] ** 3 - 1 + operator.truediv(1, xs[0])
        return out.eps[0, 0]

    x = 1.3
    assert run(np.array([x])) == pytest.approx(6 * x**2 - 1 / x**2, rel=1e-14)
