"""Boxing between numpy-level Dual arrays and compiled DualArray{K}."""

import numpy as np
import pytest
from numba import njit

import sensitivity as sn
from sensitivity.ad.dual import Dual
from tests.rhs_suite import SUITE


@njit
def _roundtrip(y):
    z = np.empty_like(y)
    z[:] = y
    return z


@njit
def _write(y):
    y[0] = y[1] * 3.0


def test_roundtrip_keeps_values_partials_and_tag():
    rng = np.random.default_rng(0)
    y = Dual(rng.standard_normal(4), rng.standard_normal((4, 3)), 17)
    z = _roundtrip(y)
    assert isinstance(z, Dual) and z._ad_tag == 17
    np.testing.assert_array_equal(z.val, y.val)
    np.testing.assert_array_equal(z.eps, y.eps)


def test_in_place_writes_are_shared():
    y = Dual(np.array([1.0, 2.0]), np.array([[1.0, 0.0], [0.5, 2.0]]), 3)
    _write(y)
    np.testing.assert_array_equal(y.val, [6.0, 2.0])
    np.testing.assert_array_equal(y.eps[0], [1.5, 6.0])


def test_unsupported_duals_do_not_enter():
    nested = Dual(Dual(np.ones(2), np.ones((2, 1)), 1), np.ones((2, 1)), 2)
    with pytest.raises(Exception, match="(?i)type|nopython"):
        _roundtrip(nested)


@pytest.mark.parametrize("case", SUITE, ids=lambda c: c.name)
def test_compiled_rhs_on_numpy_duals_equals_python(case):
    # The compiled f called from Python on numpy-level duals == plain f on them.
    t, y, p = case.point()
    rng = np.random.default_rng(1)
    K = 4
    yd = Dual(y, rng.standard_normal((case.n, K)), 9)
    f = njit(case.f)
    out_c = Dual(np.zeros(case.n), np.zeros((case.n, K)), 9)
    f(t, yd, p, out_c)
    np.testing.assert_array_equal(yd.val, y)
    if case.name == "helper_call":  # its njit helper cannot take numpy-level duals
        return
    out_p = Dual(np.zeros(case.n), np.zeros((case.n, K)), 9)
    case.f(t, yd, p, out_p)
    np.testing.assert_allclose(out_c.val, out_p.val, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(out_c.eps, out_p.eps, rtol=1e-12, atol=1e-13)


def test_public_similar_inside_compiled_code():
    @njit
    def g(y):
        s = sn.similar(y)
        s[0] = y[0] * 2.0
        return s

    y = Dual(np.array([1.5, 2.0]), np.eye(2), 4)
    s = g(y)
    assert isinstance(s, Dual)
    np.testing.assert_array_equal(s.eps, [[2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(g(np.array([1.0, 2.0])), [2.0, 0.0])
