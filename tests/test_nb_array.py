"""DualArray{K} inside numba: indexing, slices, reductions, scratch arrays."""

import numpy as np
import pytest
from numba import njit

from sensitivity.ad import nb

K = 4


def _dual(x, E):
    return nb.dual_array_k(x, E, 0, K)


@njit
def _indexing(x, E):
    y = nb.dual_array_k(x, E, 0, 4)
    out = np.empty_like(y)
    out[:] = 0.0
    out[0] = y[-1]  # negative index wraps
    out[1] = y[1] * 2.0
    tail = y[2:]  # a view
    out[2:4] = tail[:2]  # slice assignment from a dual array
    out[4:] = y[0]  # slice assignment from a dual scalar
    return out.val.copy(), out.eps.copy(), len(y), y.shape[0], y.size, y.ndim, len(tail)


def test_indexing_and_slices():
    rng = np.random.default_rng(0)
    x, E = rng.standard_normal(6), rng.standard_normal((6, K))
    val, eps, n, s0, size, ndim, nt = _indexing(x, E)
    assert (n, s0, size, ndim, nt) == (6, 6, 6, 1, 4)
    np.testing.assert_array_equal(val, [x[-1], 2 * x[1], x[2], x[3], x[0], x[0]])
    np.testing.assert_array_equal(eps, np.array([E[-1], 2 * E[1], E[2], E[3], E[0], E[0]]))


@njit
def _strided(x, E):
    y = nb.dual_array_k(x, E, 0, 4)
    z = y[::2]
    out = nb.dual_array_k(np.zeros(len(z)), np.zeros((len(z), 4)), 0, 4)
    for i in range(len(z)):
        out[i] = z[i]
    return out.eps.copy()


def test_strided_view():
    rng = np.random.default_rng(1)
    x, E = rng.standard_normal(7), rng.standard_normal((7, K))
    np.testing.assert_array_equal(_strided(x, E), E[::2])


@njit
def _reductions(x, E, w):
    y = nb.dual_array_k(x, E, 0, 4)
    out = nb.dual_array_k(np.zeros(4), np.zeros((4, 4)), 0, 4)
    out[0] = np.sum(y)
    out[1] = np.dot(y, w)
    out[2] = np.dot(w, y)
    out[3] = np.dot(y, y)
    return out.val.copy(), out.eps.copy()


def test_sum_and_dot():
    rng = np.random.default_rng(2)
    x, E, w = rng.standard_normal(5), rng.standard_normal((5, K)), rng.standard_normal(5)
    val, eps = _reductions(x, E, w)
    np.testing.assert_allclose(val, [x.sum(), x @ w, w @ x, x @ x], rtol=1e-14)
    np.testing.assert_allclose(eps[0], E.sum(0), rtol=1e-14)
    np.testing.assert_allclose(eps[1], w @ E, rtol=1e-14)
    np.testing.assert_allclose(eps[2], w @ E, rtol=1e-14)
    np.testing.assert_allclose(eps[3], 2 * x @ E, rtol=1e-14)


@njit
def _scratch(x, E, p):
    y = nb.dual_array_k(x, E, 0, 4)
    a = np.zeros_like(y)
    b = np.empty_like(y)
    c = nb.similar(y)
    d = nb.similar(p, y)  # dual because y is
    e = nb.similar(p)  # float
    f = y.copy()
    f[0] = 0.0
    for i in range(len(y)):
        b[i] = y[i]
        d[i] = y[i] * p[i]
        e[i] = p[i]
    return a.eps.sum(), c.eps.sum(), b.eps.copy(), d.eps.copy(), e.sum(), y.val[0]


def test_scratch_arrays():
    rng = np.random.default_rng(3)
    x, E, p = rng.standard_normal(4), rng.standard_normal((4, K)), rng.standard_normal(4)
    za, zc, b, d, e, y0 = _scratch(x, E, p)
    assert za == 0.0 and zc == 0.0
    np.testing.assert_array_equal(b, E)
    np.testing.assert_allclose(d, p[:, None] * E)
    assert e == p.sum()
    assert y0 == x[0]  # copy() did not alias


def test_similar_plain_python():
    y = np.arange(3.0)
    s = nb.similar(y, 1j * y)
    assert s.dtype == complex and s.shape == (3,) and not s.any()


def test_dual_types_carry_the_stamp():
    from sensitivity.ad.nb_types import STAMP
    from sensitivity.ad.rules import RULES_VERSION

    assert STAMP.startswith(RULES_VERSION + ".")
    assert STAMP in str(nb.DualArrayType(3)) and STAMP in str(nb.DualType(3))


def _stencil(y, p, dydt):
    # reads y[i - 1], y[i + 1] (offsets from the loop index), negative indices, scalar stores
    n = len(y)
    for i in range(1, n - 1):
        dydt[i] = p[i] * (y[i + 1] - 2.0 * y[i] + y[i - 1])
    dydt[0] = y[-1] * y[1]
    dydt[-1] = 3.0
    dydt[n - 2] = dydt[-2] + y[-n]


_stencil_nb = njit(_stencil)


def _make_stencil_loop(k):
    @njit
    def run(x, E, p):
        y = nb.dual_array_k(x, E, 0, k)
        out = nb.similar(y)  # (shares y's tag when numba is off)
        _stencil_nb(y, p, out)
        return out.val.copy(), out.eps.copy()

    return run


@pytest.mark.parametrize("k", [1, 3, 4, 5, 8])
@pytest.mark.parametrize("layout", ["C", "A"])
def test_indexing_against_numpy_duals(k, layout):
    # Rows are addressed at i*K for C-contiguous partials (odd K: a <3 x double> is
    # padded to 32 bytes, the rows are not) and through the strides otherwise;
    # the numpy-level duals are the independent reference.
    from sensitivity.ad.dual import Dual

    rng = np.random.default_rng(k)
    n = 11
    x, p = rng.standard_normal(n), rng.standard_normal(n)
    E = rng.standard_normal((n, k))
    if layout == "A":  # rows further apart than K
        E = np.concatenate([E, np.zeros((n, 2))], axis=1)[:, :k]
    ov, oe = _make_stencil_loop(k)(x, E, p)
    yd = Dual(x, np.array(E))
    ref = Dual(np.zeros(n), np.zeros((n, k)), yd._ad_tag)
    _stencil(yd, p, ref)
    np.testing.assert_allclose(ov, ref.val, rtol=1e-15, atol=0)
    np.testing.assert_allclose(oe, ref.eps, rtol=1e-15, atol=0)
    assert np.all(oe[-1] == 0.0) and ov[-1] == 3.0


@njit
def _wrong_k(x, E):
    return nb.dual_array_k(x, E, 0, 4)


def test_dual_array_k_checks_shape():
    with pytest.raises(ValueError, match="eps must have shape"):
        _wrong_k(np.zeros(3), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="eps must have shape"):
        _wrong_k(np.zeros(3), np.zeros((2, 4)))
