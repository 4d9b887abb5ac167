"""Lanes of eight (:mod:`sensitivity.ad.nb_lanes`): compiled and Python give the same bits."""

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from sensitivity.ad.nb_lanes import LANES, load, prefetch, prefetch_write, store


def sweep(a, b, c, s, out):
    """out = (a - b) * c + s * a, lanes of eight, then the scalar remainder; prefetches
    ahead of the loads (past the end of ``a`` near the end: a hint never faults)."""
    n = a.shape[0]
    whole = n - n % LANES
    for k in range(0, whole, LANES):
        prefetch(a, k + 4096)
        prefetch_write(out, k + 256)
        x = load(a, k)
        store(out, k, (x - load(b, k)) * load(c, k) + s * x)
    for k in range(whole, n):
        out[k] = (a[k] - b[k]) * c[k] + s * a[k]


compiled = njit(cache=True)(sweep)


@pytest.mark.parametrize("n", [0, 7, 8, 61, 1024 + 5])
def test_compiled_lanes_are_bitwise_the_python_twin(n, rng):
    vals = rng.standard_normal((3, n)) * np.exp(rng.uniform(-700, 700, (3, n)))
    if n > 8:  # special values: infinities, signed zeros, subnormals
        vals[0, :4] = [np.inf, -0.0, 5e-324, -np.inf]
        vals[1, :4] = [1.0, 0.0, -5e-324, 2.0]
    a, b, c = vals
    got, want = np.full(n, np.nan), np.full(n, np.nan)
    compiled(a, b, c, 0.3, got)
    with np.errstate(all="ignore"):  # inf - inf and overflow are part of the test
        sweep(a, b, c, 0.3, want)
        ref = (a - b) * c + 0.3 * a
    assert np.array_equal(got.view(np.int64), want.view(np.int64), equal_nan=False)
    assert np.array_equal(want, ref, equal_nan=True)


def test_python_twins_copy_and_write_whole_lanes():
    a = np.arange(20.0)
    x = load(a, 8)
    x[:] = -1.0  # a copy: a is untouched
    assert np.array_equal(a, np.arange(20.0))
    store(a, 8, np.full(LANES, 7.0))
    assert np.array_equal(a[8:16], np.full(8, 7.0)) and a[7] == 7.0 and a[16] == 16.0
    assert prefetch(a, 10**9) is None and prefetch_write(a, -(10**9)) is None


def test_lanes_refuse_arrays_they_cannot_load():
    @njit
    def f(a):
        return load(a, 0)

    with pytest.raises(TypingError):
        f(np.arange(16))  # int64
    with pytest.raises(TypingError):
        f(np.zeros(32)[::2])  # strided
