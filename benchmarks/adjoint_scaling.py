"""Adjoint gradients: cost relative to one solve (issue 6 benchmark).

Part 1, Lotka-Volterra (4 parameters + 2 initial values, 21 observations of both states, L2
misfit, Tsit5 at rtol 1e-6, atol 1e-8): our discrete adjoint (one forward solve keeping its
steps, one compiled reverse sweep) against our plain solve, against the forward-sensitivity
gradient, and against central differences of scipy ``solve_ivp``. Medians after warm-up,
in one process; also the continuous adjoint.

Part 2, the 1-D diffusion table of issue 6: u_t = (k(x) u_x)_x on [0, 1], N finite-volume
cells, u = 0 at both ends (boundary faces at half a cell), harmonic-mean face
conductivities, N parameters k_i, 5 sensors, 20 observation times, L2 misfit, rtol 1e-6,
atol 1e-8. Our continuous adjoint (BDF on -J^T, banded LU) against our plain BDF solve;
the gradient error against the exact reference (the system is linear: eigen-decomposition
of the symmetric tridiagonal matrix, closed-form time integrals); CasADi's CVODES adjoint
(reverse mode through its integrator) when casadi is installed; scipy BDF with central
differences (2N solves; timed for N <= 64 and extrapolated from one solve beyond, marked
"extrap."). Peak memory: tracemalloc's peak of Python allocations during the gradient
(numpy arrays included; numba/CVODES internals not seen).

Run: ``python benchmarks/adjoint_scaling.py [max_N]``
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from scipy.integrate import solve_ivp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _diffusion import (  # noqa: E402
    casadi_gradient,
    exact,
    heat,
    peak_memory,
    scipy_fd_gradient,
    setup,
)

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


def lotka_volterra():
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

    def cont():
        return sn.adjoint_gradient(prob, obj, kind="continuous", rtol=1e-6, atol=1e-8)

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
        ("adjoint_gradient(kind='continuous')", median_time(cont, 10), cont().grad_p),
        ("scipy RK45, central differences (8 solves)", t_fd, fd()),
    ]
    print("Lotka-Volterra: gradient of an L2 misfit, 4 parameters + 2 initial values")
    print(f"  {'what':52s} {'median':>10s} {'/ solve()':>10s} {'rel err':>9s}")
    for name, t, g in rows:
        err = "" if g is None else f"{np.abs(g - ref).max() / np.abs(ref).max():9.1e}"
        print(f"  {name:52s} {t * 1e3:8.3f}ms {t / t_solve1:9.2f}x {err}")


def main():
    lotka_volterra()
    print()
    max_n = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    diffusion_table([n for n in (16, 64, 256, 1024, 4096) if n <= max_n])
    print()
    checkpoint_table(min(max_n, 1024))


def checkpoint_table(n):
    """Discrete BDF adjoint of the diffusion problem: stored steps vs a memory budget.

    The budget is 1/10 of the stored-steps bytes; the checkpointed gradient keeps the step
    record and the online checkpointer's states, and replays steps backwards.
    """
    x, u0, k, sensors, ts = setup(n)
    data = exact(k * (1 + 0.2 * np.cos(3 * np.pi * x)), u0, sensors, ts)
    g_ref = exact(k, u0, sensors, ts, data)[1]
    prob = sn.ODEProblem(heat, u0, (0.0, 0.1), k)
    obj = sn.L2Misfit(ts, data, observe=sensors)
    kw = dict(kind="discrete", method="BDF", rtol=1e-6, atol=1e-8)
    full = sn.adjoint_gradient(prob, obj, **kw)
    budget = full.stats["stored_bytes"] // 10
    t_solve = median_time(sn.Solver(prob, "BDF", ts, 1e-6, 1e-8), 6)
    print(f"1-D diffusion, N = {n}: discrete BDF adjoint, stored steps vs memory_budget")
    print(
        f"  {'what':34s} {'grad s':>8s} {'/ solve':>8s} {'/ stored':>8s} {'peak stored':>12s}"
        f" {'recomp.':>8s} {'err':>8s} {'vs stored':>9s}"
    )
    t_full = None
    for name, extra in (("stored steps", {}), (f"memory_budget={budget} (1/10)", {})):
        if t_full is not None:
            extra = dict(memory_budget=budget)
        t = median_time(lambda: sn.adjoint_gradient(prob, obj, **kw, **extra), 3)  # noqa: B023
        r = sn.adjoint_gradient(prob, obj, **kw, **extra)
        t_full = t if t_full is None else t_full
        print(
            f"  {name:34s} {t:8.4f} {t / t_solve:8.1f} {t / t_full:8.2f}"
            f" {r.stats['peak_stored_bytes']:12d} {r.stats['recomputations']:8.2f}"
            f" {_rel(r.grad_p, g_ref):8.1e} {_rel(r.grad_p, full.grad_p):9.1e}"
        )


def _rel(g, ref):
    return np.abs(g - ref).max() / np.abs(ref).max()


def diffusion_table(sizes):
    print("1-D diffusion, N parameters (issue 6 table); seconds (medians), ratio = grad/solve")
    print("peak MB: tracemalloc peak of the gradient call (the BDF solve's own peak included);")
    print("stored MB: the forward steps kept for the reverse sweep; err: max-norm relative error")
    print(
        f"{'N':>5s} {'solve':>8s} | {'discrete BDF adjoint':^39s} | {'continuous adjoint':^22s}"
        f" | {'CasADi CVODES adjoint':^22s} | {'scipy BDF + FD':>14s}"
    )
    print(
        f"{'':5s} {'':8s} | {'grad':>7s} {'ratio':>5s} {'peak MB':>7s} {'stored':>7s} {'err':>7s}"
        f" | {'grad':>7s} {'ratio':>5s} {'err':>7s} | {'grad':>7s} {'ratio':>5s} {'err':>7s} |"
    )
    rows = []  # machine-readable copy for the documentation's plot
    for n in sizes:
        x, u0, k, sensors, ts = setup(n)
        data = exact(k * (1 + 0.2 * np.cos(3 * np.pi * x)), u0, sensors, ts)
        g_ref = exact(k, u0, sensors, ts, data)[1]
        prob = sn.ODEProblem(heat, u0, (0.0, 0.1), k)
        obj = sn.L2Misfit(ts, data, observe=sensors)
        solver = sn.Solver(prob, "BDF", ts, 1e-6, 1e-8)

        def grad(kind):
            return sn.adjoint_gradient(prob, obj, kind=kind, method="BDF", rtol=1e-6, atol=1e-8)

        rep = 9 if n <= 256 else 3
        t_solve = median_time(solver, rep * 2)
        t_grad = median_time(lambda: grad("discrete"), rep)
        r, mem = peak_memory(lambda: grad("discrete"))
        stored = r.stats["stored_bytes"] / 1e6
        row = f"{n:5d} {t_solve:8.5f} | {t_grad:7.4f} {t_grad / t_solve:5.1f} {mem / 1e6:7.1f}"
        row += f" {stored:7.2f}"
        row += f" {_rel(r.grad_p, g_ref):7.1e}"
        rec = dict(n=n, solve=t_solve, discrete=t_grad, discrete_err=_rel(r.grad_p, g_ref))
        if n <= 1024:
            t_c = median_time(lambda: grad("continuous"), 1)
            rc = grad("continuous")
            row += f" | {t_c:7.3f} {t_c / t_solve:5.0f} {_rel(rc.grad_p, g_ref):7.1e}"
            rec["continuous"] = t_c
        else:
            row += f" | {'(skipped: slow)':>21s}"
        cas = casadi_gradient(u0, k, sensors, ts, data)
        if cas is None:
            row += f" | {'n/a':>21s}"
        else:
            t_cas, t_cas_solve, g_cas = cas
            row += f" | {t_cas:7.3f} {t_cas / t_cas_solve:5.1f} {_rel(g_cas, g_ref):7.1e}"
            rec["casadi"] = t_cas
        t_fd, extrap = scipy_fd_gradient(u0, k, sensors, ts, data, timed_max_n=64)
        row += f" | {t_fd:7.1f}{' extrap.' if extrap else ''}"
        rec["scipy_fd"], rec["scipy_fd_extrapolated"] = t_fd, bool(extrap)
        rows.append(rec)
        print(row, flush=True)
    print("json:", json.dumps({"diffusion": rows}))


if __name__ == "__main__":
    main()
