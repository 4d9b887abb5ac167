"""Benchmark: compiled duals against floats inside compiled loops (issue 3).

Prints, for Lotka-Volterra, a libm-heavy stencil and an arithmetic-only
diffusion stencil (N = 1000), the cost of one right-hand-side call on
``DualArray{K}`` divided by one call on floats, at K = 1, 4, 8 (medians of
repeats, after warm-up, in one process); the sparse Jacobian of the 1-D
diffusion operator at N = 10^4 over one float evaluation; and the first-call
latency (import + compile of the float and dual kernels) in a fresh process,
without and with numba's on-disk cache.

Run: ``python benchmarks/nb_duals.py`` (``--quick`` for fewer repeats).
Targets (issue 3): LV <= 4x at K = 4; libm stencil <= 2x; diffusion <= 6x at
K = 4; sparse Jacobian <= 10x; first call <= 3 s, cached <= 0.5 s.
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
import time

import numpy as np
from numba import njit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _latency import fresh_and_cached, numba_floor  # noqa: E402

from sensitivity.ad.nb import dual_array_k
from sensitivity.ode.problem import ODEProblem


@njit  # not cached: compiled in-process, so the loops below can inline it
def lotka_volterra(t, y, p, dydt):
    dydt[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    dydt[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


@njit  # not cached: compiled in-process, so the loops below can inline it
def libm_stencil(t, y, p, dydt):
    n = len(y)
    for i in range(1, n - 1):
        dydt[i] = p[0] * (y[i + 1] - 2.0 * y[i] + y[i - 1]) - np.exp(-np.abs(y[i])) * np.sin(y[i])
    dydt[0] = 0.0
    dydt[n - 1] = 0.0


@njit  # not cached: compiled in-process, so the loops below can inline it
def diffusion(t, y, p, dydt):
    n = len(y)
    for i in range(1, n - 1):
        dydt[i] = p[i] * (y[i + 1] - 2.0 * y[i] + y[i - 1])
    dydt[0] = p[0] * (y[1] - 2.0 * y[0])
    dydt[n - 1] = p[n - 1] * (y[n - 2] - 2.0 * y[n - 1])


def _make_loops(f, K):
    @njit
    def float_loop(y, p, reps):
        out = np.empty_like(y)
        s = 0.0
        for r in range(reps):
            y[0] += 1e-300  # defeat hoisting out of the loop
            f(0.0, y, p, out)
            s += out[1]
        return s

    @njit
    def dual_loop(y, ey, p, reps):  # K: a compile-time constant of the closure
        n = len(y)
        # The partials live in compiled-code allocations, as in the library's kernels
        # (numba aligns them to 32 bytes; numpy only to 16, which puts half of the
        # 32-byte rows of K = 4 across two cache lines: 15-20 % slower, by chance).
        ed = np.empty((n, K))
        ed[:] = ey
        yd = dual_array_k(y, ed, 0, K)
        oe = np.empty((n, K))
        out = dual_array_k(np.empty(n), oe, 0, K)
        s = 0.0
        for r in range(reps):
            y[0] += 1e-300  # y is yd.val: same buffer
            f(0.0, yd, p, out)
            s += oe[1, K - 1]
        return s

    return float_loop, dual_loop


def _median_time(fn, args, repeats):
    fn(*args)  # warm-up (compiles)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def ratios(name, f, y, p, reps, repeats):
    float_loop = _make_loops(f, 1)[0]
    tf = _median_time(float_loop, (y.copy(), p, reps), repeats) / reps
    out = {}
    for K in (1, 4, 8):
        dual_loop = _make_loops(f, K)[1]
        ey = np.random.default_rng(0).standard_normal((len(y), K))
        td = _median_time(dual_loop, (y.copy(), ey, p, reps), repeats) / reps
        out[K] = td / tf
    line = "  ".join(f"K={K}: {r:5.2f}x" for K, r in out.items())
    print(f"{name:<28s} float {tf * 1e9:9.1f} ns/call   dual/float  {line}")
    return out


def sparse_jacobian(repeats):
    n = 10_000
    y0 = np.linspace(0.0, 1.0, n)
    prob = ODEProblem(diffusion, y0, (0.0, 1.0), np.ones(n))
    out = np.empty(n)
    prob.jacobian(0.0, y0)  # warm-up
    S = prob.jac_sparsity
    nc = prob.jac_colors[1]
    # the kernel and its arguments as prob.jacobian calls it (values in colour order)
    setup = prob._sparse_setup(S, prob.jac_colors, "sparse_jac", by_colour=True)
    kern, seeds, pos, runs, loose, _ = setup
    K = seeds.shape[2]
    data = np.zeros(S.nnz)
    tf = _median_time(prob.rhs_kernel, (0.0, y0, prob.p, out), repeats * 20)
    tk = _median_time(kern, (0.0, y0, prob.p, seeds, pos, runs, loose, data), repeats * 20)
    tv = _median_time(prob.jacobian_values, (0.0, y0, data), repeats * 20)
    tm = _median_time(prob.jacobian, (0.0, y0), repeats * 20)
    print(
        f"sparse Jacobian, diffusion N=1e4 ({nc} colours, K={K}): kernel {tk / tf:5.2f}x one "
        f"float evaluation; prob.jacobian() (the kernel and a scipy csr_matrix) "
        f"{tm / tf:5.2f}x; prob.jacobian_values() (values gathered into the pattern's "
        f"column order) {tv / tf:5.2f}x"
    )
    return tk / tf, tv / tf, tm / tf


_FIRST_CALL = textwrap.dedent(
    """
    import time
    t0 = time.perf_counter()
    import numpy as np
    from sensitivity.ode.problem import ODEProblem
    from rhs_mod import lv
    prob = ODEProblem(lv, [1.0, 2.0], (0.0, 10.0), [1.0, 2.0, 3.0, 4.0])
    prob.rhs(0.0, prob.y0)
    prob.jacobian(0.0, prob.y0)
    prob.param_jacobian(0.0, prob.y0)
    prob.jvp(0.0, prob.y0, np.ones(2))
    print(time.perf_counter() - t0)
    """
)

_RHS_MOD = textwrap.dedent(
    """
    def lv(t, y, p, dydt):
        dydt[0] = p[0] * y[0] - p[1] * y[0] * y[1]
        dydt[1] = -p[2] * y[1] + p[3] * y[0] * y[1]
    """
)


def first_call():
    """Seconds for import + compile in a fresh process, then (best of 3) with the cache,
    and the numba floor (:mod:`_latency`) measured beside them."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "rhs_mod.py"), "w") as fh:
            fh.write(_RHS_MOD)
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(d, "cache"))
        env["PYTHONPATH"] = os.pathsep.join([d, os.getcwd(), env.get("PYTHONPATH", "")])
        times = fresh_and_cached(_FIRST_CALL, env, d)  # empty cache, then warm
        floor = numba_floor(env)
    print(
        f"first call (import + compile float & dual kernels): fresh {times[0]:.2f} s, "
        f"cached {times[1]:.2f} s (best of 3); numba floor (numpy + numba + one cached "
        f"one-line kernel) {floor:.2f} s"
    )
    return times


def main(quick=False):
    rep = 5 if quick else 15
    rng = np.random.default_rng(1)
    lv_y, lv_p = np.array([1.0, 2.0]), np.arange(1.0, 5.0)
    ratios("Lotka-Volterra", lotka_volterra, lv_y, lv_p, 200_000, rep)
    n = 1000
    y = rng.uniform(0.1, 1.0, n)
    ratios("libm stencil N=1000", libm_stencil, y, np.ones(n), 500, rep)
    ratios("diffusion stencil N=1000", diffusion, y, rng.uniform(0.5, 1.5, n), 2000, rep)
    sparse_jacobian(rep)
    first_call()


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
