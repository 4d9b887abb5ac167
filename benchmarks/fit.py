"""Fitting Lotka-Volterra to noisy data: our least_squares path vs plain scipy (issue 7).

Ours: ``sn.fit(sn.Objective(prob, sn.L2Misfit(...)))``: ``least_squares`` with the residual
Jacobian from one forward-sensitivity solve per iteration (compiled duals). Plain scipy:
``least_squares`` with its own finite-difference Jacobian over ``solve_ivp`` (RK45), as a
scientist writes it today. Same data, same start, same tolerances; wall time (median of
repeats) and number of ODE solves.

The 1-D diffusion field of the adjoint benchmark (N = 1024 cells, one conductivity per cell,
5 sensors, 20 times; ``benchmarks/_diffusion.py``), recovered from data of a perturbed
field with L-BFGS-B and second-order Tikhonov smoothing: ours with the BDF discrete adjoint
gradient; plain scipy with L-BFGS-B's own finite-difference gradient over ``solve_ivp``
(BDF with the sparse Jacobian), which costs N + 1 solves per gradient. That route takes
hours at N = 1024, so its time is extrapolated from the median time of one of its solves
times the solves it would need for the same number of objective evaluations (printed
as such).

Run: ``python benchmarks/fit.py [--quick]`` (quick: N = 256 for the diffusion field).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import scipy.sparse as sp
from scipy.integrate import solve_ivp
from scipy.optimize import least_squares

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import sensitivity as sn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _diffusion  # noqa: E402
from _timing import median  # noqa: E402

P_TRUE = np.array([1.5, 1.0, 3.0, 1.0])
TS = np.linspace(0.5, 10.0, 20)


def lv(t, y, p, dydt):
    dydt[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    dydt[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


def main():
    prob = sn.ODEProblem(lv, [1.0, 1.0], (0.0, 10.0), P_TRUE)
    y = sn.solve(prob, method="Tsit5", t_eval=TS, rtol=1e-10, atol=1e-12).y
    data = y + 0.05 * np.random.default_rng(0).standard_normal(y.shape)
    x0 = 0.9 * P_TRUE

    def ours():
        obj = sn.Objective(prob, sn.L2Misfit(TS, data), method="Tsit5", rtol=1e-6, atol=1e-8)
        res = sn.fit(obj, x0, progress=False)
        return res, obj.nsolves

    solves = {"n": 0}

    def fun(t, z, q):
        return [q[0] * z[0] - q[1] * z[0] * z[1], -q[2] * z[1] + q[3] * z[0] * z[1]]

    def residuals(q):
        solves["n"] += 1
        sol = solve_ivp(fun, (0, 10), [1.0, 1.0], t_eval=TS, args=(q,), rtol=1e-6, atol=1e-8)
        return (sol.y.T - data).ravel()

    def plain(method="trf"):
        solves["n"] = 0
        return least_squares(residuals, x0, method=method), solves["n"]

    def plain_lm():
        return plain("lm")

    (r1, n1), (r2, n2), (_, n3) = ours(), plain(), plain_lm()
    # interleaved, so that a change of load on the shared machine hits all alike
    t1, t2, t3 = [], [], []
    for _ in range(5):
        t1.append(median(ours, 3))
        t2.append(median(plain, 1))
        t3.append(median(plain_lm, 1))
    t1, t2, t3 = (float(np.median(t)) for t in (t1, t2, t3))
    print("Lotka-Volterra fit, 4 parameters, 40 noisy observations")
    print(
        f"  ours  (least_squares + forward sensitivities): {t1 * 1e3:9.2f} ms, "
        f"{n1:3d} sensitivity solves, x = {np.round(r1.x, 4)}"
    )
    print(
        f"  scipy (least_squares + FD over solve_ivp):     {t2 * 1e3:9.2f} ms, "
        f"{n2:3d} solves,             x = {np.round(r2.x, 4)}"
    )
    print(
        f"  scipy, method='lm' (MINPACK + FD):           {t3 * 1e3:9.2f} ms, "
        f"{n3:3d} solves ({t3 / t1:.0f}x ours)"
    )
    print(
        f"  speed-up {t2 / t1:.0f}x over scipy's default; estimates agree to "
        f"{np.abs(r1.x - r2.x).max() / np.abs(r2.x).max():.1e} (relative)"
    )


def newton_fit():
    """Lotka-Volterra by trust-region Newton-CG: exact Hessian products (second-order
    forward sensitivities) against Gauss-Newton ones; cost of one product."""
    prob = sn.ODEProblem(lv, [1.0, 1.0], (0.0, 10.0), P_TRUE)
    y = sn.solve(prob, method="Tsit5", t_eval=TS, rtol=1e-10, atol=1e-12).y
    data = y + 0.05 * np.random.default_rng(0).standard_normal(y.shape)
    x0 = 0.9 * P_TRUE

    def run(kind):
        obj = sn.Objective(prob, sn.L2Misfit(TS, data), method="Tsit5", rtol=1e-8, atol=1e-10)
        res = sn.fit(obj, x0, method="trust-ncg", hessp=kind, progress=False, gtol=1e-8)
        return res, obj.nsolves

    obj = sn.Objective(prob, sn.L2Misfit(TS, data), method="Tsit5", rtol=1e-8, atol=1e-10)
    v = np.ones(4)
    k = [0]

    def fresh(f):  # a new x each call: no cached evaluation
        k[0] += 1
        return f(x0 * (1 + 1e-9 * k[0]))

    t_grad = median(lambda: fresh(obj.jac), 50)
    t_hv = median(lambda: fresh(lambda x: obj.hessp(x, v, kind="exact")), 50)
    print("\nLotka-Volterra, trust-ncg (Newton-CG in a trust region), 4 parameters")
    print(f"  one exact Hessian-vector product {t_hv * 1e3:.3f} ms = {t_hv / t_grad:.1f}x "
          f"one gradient (forward sensitivities, {t_grad * 1e3:.3f} ms)")  # fmt: skip
    for kind in ("exact", "gauss-newton"):
        (res, ns), t = run(kind), median(lambda: run(kind), 5)
        print(f"  hessp={kind!r:15s} {t * 1e3:8.2f} ms, {res.nit:3d} iterations, {ns:3d} solves, "
              f"x = {np.round(res.x, 4)}")  # fmt: skip


def diffusion_fit(n, maxiter=30):
    """L-BFGS-B recovery of the N-cell conductivity: (our seconds, scipy's extrapolated)."""
    x, u0, k0, sensors, ts = _diffusion.setup(n)
    k_true = k0 * (1.0 + 0.2 * np.cos(3.0 * np.pi * x))
    data = _diffusion.exact(k_true, u0, sensors, ts)
    prob = sn.ODEProblem(_diffusion.heat, u0, (0.0, 0.1), k0)
    misfit = sn.Objective(prob, sn.L2Misfit(ts, data, observe=sensors), method="BDF",
                          rtol=1e-6, atol=1e-8, gradient="adjoint")  # fmt: skip
    obj = misfit + sn.Tikhonov(n, order=2, weight=1e-10, spacing=1.0 / n)
    opts = dict(method="L-BFGS-B", progress=False, maxiter=maxiter, bounds=(0.2, 5.0))
    sn.fit(obj, k0, **{**opts, "maxiter": 2})  # warm-up: compile / load the kernels
    t0 = time.perf_counter()
    res = sn.fit(obj, k0, **opts)
    ours = time.perf_counter() - t0
    evals = int(res.nfev)
    err0 = np.linalg.norm(k0 - k_true) / np.linalg.norm(k_true)
    err1 = np.linalg.norm(res.x - k_true) / np.linalg.norm(k_true)
    # the plain route: each L-BFGS-B evaluation is a value plus an N-point forward
    # difference gradient, N + 1 solve_ivp(BDF, sparse jac) solves
    d, e = _diffusion.tridiag(k0)
    A = sp.diags([e, d, e], [-1, 0, 1], format="csc")

    def one_solve():
        return solve_ivp(lambda t, y: A @ y, (0, 0.1), u0, "BDF", ts, rtol=1e-6, atol=1e-8, jac=A)

    t_one = median(one_solve, 3)
    scipy_s = evals * (n + 1) * t_one
    print(f"\n1-D diffusion field, N = {n}, L-BFGS-B ({maxiter} iterations at most), "
          f"Tikhonov order 2")  # fmt: skip
    print(f"  ours  (adjoint gradients, BDF):  {ours:9.2f} s, {evals} evaluations, "
          f"relative error of k {err0:.3f} -> {err1:.3f}, misfit "
          f"{res.history[0]['fun']:.3e} -> {res.fun:.3e}")  # fmt: skip
    print(f"  scipy (FD gradients, solve_ivp BDF): {scipy_s:9.1f} s EXTRAPOLATED = {evals} "
          f"evaluations x {n + 1} solves x {1e3 * t_one:.1f} ms per solve")  # fmt: skip
    print(f"  speed-up {scipy_s / ours:.0f}x (target >= 50x)")


if __name__ == "__main__":
    main()
    newton_fit()
    diffusion_fit(256 if "--quick" in sys.argv else 1024)
