"""The timing helpers of the benchmarks: medians of repeated calls after warm-up."""

from __future__ import annotations

import time

import numpy as np


def timings(fn, repeat, warmup):
    """Seconds of ``repeat`` timed calls of ``fn()`` after ``warmup`` untimed ones, (repeat,)."""
    for _ in range(warmup):
        fn()
    times = np.empty(repeat)
    for i in range(repeat):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return times


def median(fn, repeat, warmup=1):
    """Return the median of ``repeat`` timed calls after ``warmup`` untimed ones."""
    return float(np.median(timings(fn, repeat, warmup)))


def median_time(fn, repeat):
    """Return (median, minimum) of ``repeat`` timed calls after two warm-up calls.

    The median is the figure; the minimum is printed next to it because it is robust to
    other load on a shared machine (which shows up as whole scheduler slices, ~4 ms).
    """
    times = timings(fn, repeat, 2)
    return float(np.median(times)), float(times.min())
