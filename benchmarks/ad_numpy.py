"""Cost of numpy-level derivatives relative to the function (issue 2 benchmark).

For f(x) = sum(exp(sin(x)) * x + sin(x) * x * x), prints per size n: the
function time, the gradient by the tape and their ratio, and the
Jacobian-vector product by the duals with K = 1 and K = 8 partials and their
ratios. Medians of repeats after a warm-up, in one process.

Targets (DESIGN.md / issue 2): gradient/function <= 5 and jvp(K=1)/function
<= 3 at n = 10^6.

Run: python benchmarks/ad_numpy.py
"""

from __future__ import annotations

import time

import numpy as np

import sensitivity as sn
from sensitivity.ad.dual import Dual


def f(x):
    s = np.sin(x)
    return np.sum(np.exp(s) * x + s * x * x)


def median_time(fun, repeats):
    fun()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fun()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    rng = np.random.default_rng(0)
    print(
        f"{'n':>8} {'f [ms]':>9} {'grad [ms]':>10} {'grad/f':>7} "
        f"{'jvp K=1':>8} {'/f':>5} {'jvp K=8':>8} {'/f':>5}"
    )
    for n in (10**3, 10**5, 10**6):
        x = rng.standard_normal(n)
        v1 = rng.standard_normal((n, 1))
        v8 = rng.standard_normal((n, 8))
        repeats = 50 if n <= 10**5 else 9
        tf = median_time(lambda: f(x), repeats)
        tg = median_time(lambda: sn.grad(f, x), repeats)
        t1 = median_time(lambda: f(Dual(x, v1)), repeats)
        t8 = median_time(lambda: f(Dual(x, v8)), repeats)
        print(
            f"{n:>8} {1e3 * tf:>9.3f} {1e3 * tg:>10.3f} {tg / tf:>7.2f} "
            f"{1e3 * t1:>8.3f} {t1 / tf:>5.2f} {1e3 * t8:>8.3f} {t8 / tf:>5.2f}"
        )


if __name__ == "__main__":
    main()
