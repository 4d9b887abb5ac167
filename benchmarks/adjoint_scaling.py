"""Adjoint gradients: cost relative to one solve (issue 6 benchmark, the part built so far).

Lotka-Volterra (4 parameters + 2 initial values, 21 observations of both states, L2
misfit, Tsit5 at rtol 1e-6, atol 1e-8): our discrete adjoint (one forward solve keeping its
steps, one compiled reverse sweep) against our plain solve, against the forward-sensitivity
gradient, and against central differences of scipy ``solve_ivp``. Medians after warm-up,
in one process. The stiff 1-D diffusion table of the issue (N = 16 ... 4096) needs the
continuous/implicit adjoint, which is not built yet; it is not reported here.

Run: ``python benchmarks/adjoint_scaling.py``
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from scipy.integrate import solve_ivp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import sensitivity as sn  # noqa: E402


def lv(t, y, p, dydt):
    dydt[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    dydt[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


def median_time(fn, repeat=50):
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    p = np.array([1.5, 1.0, 3.0, 1.0])
    ts = np.linspace(0.0, 10.0, 21)
    prob = sn.ODEProblem(lv, [1.0, 1.0], (0.0, 10.0), p)
    data = sn.solve(prob, method="Tsit5", t_eval=ts, rtol=1e-10, atol=1e-12).y * 1.05
    obj = sn.L2Misfit(ts, data)
    solver = sn.Solver(prob, "Tsit5", ts, 1e-6, 1e-8)
    t_solve = median_time(solver)
    t_solve1 = median_time(lambda: sn.solve(prob, method="Tsit5", t_eval=ts, rtol=1e-6, atol=1e-8))
    adj = lambda: sn.adjoint_gradient(prob, obj, rtol=1e-6, atol=1e-8)  # noqa: E731

    def fwd():
        return sn.gradient(
            prob,
            obj,
            method="forward",
            ode_method="Tsit5",
            rtol=1e-6,
            atol=1e-8,
        )

    t_adj, t_fwd = median_time(adj), median_time(fwd)
    ref = sn.adjoint_gradient(prob, obj, rtol=1e-12, atol=1e-14).grad_p

    def fun(t, y, q):
        return [q[0] * y[0] - q[1] * y[0] * y[1], -q[2] * y[1] + q[3] * y[0] * y[1]]

    def misfit(q):
        y = solve_ivp(fun, (0, 10), [1.0, 1.0], t_eval=ts, args=(q,), rtol=1e-6, atol=1e-8).y.T
        return 0.5 * np.sum((y - data) ** 2)

    def fd():
        return np.array([(misfit(p + 1e-6 * e) - misfit(p - 1e-6 * e)) / 2e-6 for e in np.eye(4)])

    t_fd = median_time(fd, 5)
    rows = [
        ("our Solver() plain solve", t_solve, None),
        ("our solve() one-shot", t_solve1, None),
        ("adjoint_gradient (discrete, value + grad p, y0)", t_adj, adj().grad_p),
        ("gradient(method='forward') (6 sensitivity columns)", t_fwd, fwd().grad_p),
        ("scipy RK45, central differences (8 solves)", t_fd, fd()),
    ]
    print("Lotka-Volterra: gradient of an L2 misfit, 4 parameters + 2 initial values")
    print(f"  {'what':52s} {'median':>10s} {'/ solve()':>10s} {'rel err':>9s}")
    for name, t, g in rows:
        err = "" if g is None else f"{np.abs(g - ref).max() / np.abs(ref).max():9.1e}"
        print(f"  {name:52s} {t * 1e3:8.3f}ms {t / t_solve1:9.2f}x {err}")


if __name__ == "__main__":
    main()
