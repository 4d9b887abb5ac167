"""Every rule of the table, forward and reverse, against an independent derivative."""

import numpy as np
import pytest

import sensitivity as sn
from sensitivity.ad.dual import Dual
from sensitivity.ad.rules import RULES, VALUE_ONLY
from sensitivity.testing import _central_difference, _complex_step

NAMES = sorted(RULES)


def sample(rule, rng, n=7):
    return [rng.uniform(lo, hi, n) for lo, hi in rule.domain]


def call(rule, xs):
    if rule.name == "where":
        return rule.f(xs[0] > 0.5, xs[1], xs[2])
    return rule.f(*xs)


def reference(rule, xs, i):
    """Elementwise d f / d x_i by complex step (analytic rules) or central differences."""

    def fi(xi):
        args = list(xs)
        args[i] = xi
        return call(rule, args)

    ones = np.ones_like(xs[i])
    if rule.analytic:
        return _complex_step(fi, xs[i], ones), 1e-13
    return _central_difference(fi, xs[i], ones), 1e-7


def differentiable_inputs(rule):
    return [i for i, d in enumerate(rule.d) if d is not None]


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_reference(name, rng):
    rule = RULES[name]
    xs = sample(rule, rng)
    for i in differentiable_inputs(rule):
        args = list(xs)
        args[i] = Dual(xs[i], np.ones(xs[i].shape + (1,)))
        if name == "where":
            args[0] = xs[0] > 0.5
        y = rule.f(*args)
        ref, tol = reference(rule, xs, i)
        np.testing.assert_allclose(y.eps[..., 0], ref, rtol=tol, atol=tol)
        np.testing.assert_array_equal(y.val, call(rule, xs))


@pytest.mark.parametrize("name", NAMES)
def test_reverse_matches_reference(name, rng):
    rule = RULES[name]
    xs = sample(rule, rng)
    for i in differentiable_inputs(rule):

        def f(xi, i=i):
            args = list(xs)
            args[i] = xi
            if name == "where":
                args[0] = xs[0] > 0.5
            return rule.f(*args)

        w = rng.standard_normal(xs[i].shape)
        _, g = sn.vjp(f, xs[i], w)
        ref, tol = reference(rule, xs, i)
        np.testing.assert_allclose(g, w * ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", NAMES)
def test_mixed_operands_and_scalars(name, rng):
    """Scalar-vs-array broadcasting: dual scalars against constant arrays."""
    rule = RULES[name]
    xs = sample(rule, rng, n=4)
    for i in differentiable_inputs(rule):
        scalar = float(xs[i][0])
        args = list(xs)
        args[i] = Dual(np.array(scalar), np.array([1.0]))
        if name == "where":
            args[0] = xs[0] > 0.5
        y = rule.f(*args)
        xs_b = list(xs)
        xs_b[i] = np.full(4, scalar)
        ref, tol = reference(rule, xs_b, i)
        np.testing.assert_allclose(y.eps[..., 0], ref, rtol=tol, atol=tol)


def test_power_in_all_operand_kinds():
    x = Dual(np.array(1.7), np.array([1.0]))
    assert (x**3).eps[0] == pytest.approx(3 * 1.7**2, rel=1e-15)
    assert (2.0**x).eps[0] == pytest.approx(np.log(2.0) * 2.0**1.7, rel=1e-15)
    assert (x**x).eps[0] == pytest.approx(1.7**1.7 * (np.log(1.7) + 1), rel=1e-14)
    assert (x**0.5).eps[0] == pytest.approx(0.5 / np.sqrt(1.7), rel=1e-15)
    # negative base with an integer exponent is fine; 0 ** p (p > 0) has d/dp = 0
    y = Dual(np.array(-1.5), np.array([1.0]))
    assert (y**2).eps[0] == pytest.approx(-3.0)
    p = Dual(np.array(2.5), np.array([1.0]))
    assert (0.0**p).eps[0] == 0.0


def test_comparisons_are_value_only():
    x = Dual(np.array([1.0, 2.0]), np.eye(2))
    for name, f in VALUE_ONLY.items():
        args = (x, 1.5) if f.nin == 2 else (x,)
        out = f(*args)
        assert isinstance(out, np.ndarray), name
    assert np.array_equal(x > 1.5, [False, True])


def test_kink_conventions():
    """abs, maximum, clip at their kinks: one-sided or zero subgradients, as documented."""
    z = Dual(np.array([0.0, 0.0]), np.eye(2))
    assert np.array_equal(np.abs(z).eps, np.zeros((2, 2)))
    m = np.maximum(z, np.zeros(2))
    assert np.array_equal(m.eps, np.eye(2))  # ties go to the first argument


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_follows_input(dtype):
    x = Dual(np.linspace(0.2, 1.0, 5).astype(dtype), np.ones((5, 1), dtype=dtype))
    y = np.exp(np.sin(x) * x)
    assert y.val.dtype == dtype
    ref = np.exp(np.sin(x.val.astype(float)) * x.val) * (np.cos(x.val) * x.val + np.sin(x.val))
    np.testing.assert_allclose(y.eps[:, 0], ref, rtol=1e-5 if dtype == np.float32 else 1e-14)


def test_every_numpy_ufunc_rule_is_reachable_from_operators():
    x = Dual(np.array([0.5]), np.array([[1.0]]))
    for op in (
        lambda a: a + 1,
        lambda a: 1 - a,
        lambda a: a * a,
        lambda a: 1 / a,
        lambda a: -a,
        lambda a: +a,
        lambda a: abs(a),
        lambda a: a**2,
        lambda a: 2**a,
    ):
        assert isinstance(op(x), Dual)
