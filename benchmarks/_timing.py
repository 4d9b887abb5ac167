"""The timing helper of the benchmarks that print a median and a minimum."""

from __future__ import annotations

import time

import numpy as np


def median_time(fn, repeat):
    """Return (median, minimum) of ``repeat`` timed calls after two warm-up calls.

    The median is the figure; the minimum is printed next to it because it is robust to
    other load on a shared machine (which shows up as whole scheduler slices, ~4 ms).
    """
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))
