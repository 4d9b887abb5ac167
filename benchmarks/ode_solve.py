"""Side-by-side ODE solve benchmark: sensitivity vs scipy (and peers when installed).

Problems (issue 4): Lotka-Volterra (nonstiff, 101 outputs), Robertson to 4e10 (stiff), the
1-D finite-volume diffusion problem of the adjoint issue at N = 1024 (stiff, sparse), and the
first-call latency in a fresh process (empty numba cache) and a second one (cache warm).

Peers when installed: numbalsoda (LSODA and DOP853 with a numba cfunc right-hand side;
its build needs a Fortran compiler, e.g. Debian's gfortran) and scikit-sundae (CVODE).
Every tool runs in this process after a warm-up; the figure is the median of repeats. Each
tool's error is measured against a tight-tolerance reference (a fast wrong answer does not
count). Run: ``python benchmarks/ode_solve.py [--quick]``.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numba
import numpy as np
import scipy.sparse as sp
from scipy.integrate import solve_ivp
from scipy.linalg import eigh_tridiagonal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _latency import fresh_and_cached, numba_floor, seconds  # noqa: E402
from _numbalsoda import isolated  # noqa: E402
from _timing import median  # noqa: E402

from sensitivity.ode import aot  # noqa: E402
from sensitivity.ode.bdf import BDF  # noqa: E402
from sensitivity.ode.problem import ODEProblem  # noqa: E402
from sensitivity.ode.solve import Solver, solve  # noqa: E402
from tests.problems import (  # noqa: E402
    lotka_volterra,
    lotka_volterra_jac,
    make_problem,
    rober,
    rober_jac,
)

try:  # optional peers
    import numbalsoda
except ImportError:  # pragma: no cover
    numbalsoda = None
try:
    import sksundae
except ImportError:  # pragma: no cover
    sksundae = None


def median_time(fn, repeat=20, warmup=2):
    """Median wall time of ``fn()`` in seconds after ``warmup`` calls."""
    return median(fn, repeat, warmup)


def report(title, rows, ours):
    """Print a table: tool, median ms, ratio to ours, error."""
    print(f"\n{title}")
    print(f"  {'tool':34s} {'median':>12s} {'vs ours':>10s} {'max err':>10s}")
    base = rows[ours][0]
    for name, (t, err) in rows.items():
        print(f"  {name:34s} {t * 1e3:10.4f}ms {t / base:9.1f}x {err:10.2e}")


# --- Lotka-Volterra --------------------------------------------------------------------


def lotka(repeat):
    p = np.array([1.5, 1.0, 3.0, 1.0])
    t_eval = np.linspace(0.0, 10.0, 101)
    prob = make_problem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), p, lotka_volterra_jac)

    def fun(t, y):
        return [p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]]

    ref = solve_ivp(
        fun, (0, 10), [1.0, 1.0], method="DOP853", t_eval=t_eval, rtol=1e-13, atol=1e-13
    ).y.T
    kw = dict(rtol=1e-6, atol=1e-8)
    rows = {}
    for m in ("Tsit5", "DP5", "DP8"):
        sol = solve(prob, m, t_eval=t_eval, **kw)
        t = median_time(lambda m=m: solve(prob, m, t_eval=t_eval, **kw), repeat * 10)
        rows[f"sensitivity {m}"] = (t, np.abs(sol.y - ref).max())
    solver = Solver(prob, "Tsit5", t_eval, **kw)  # validated once, e.g. inside a fit
    sol = solver(p)
    rows["sensitivity Tsit5 (Solver reused)"] = (
        median_time(lambda: solver(p), repeat * 10),
        np.abs(sol.y - ref).max(),
    )
    if aot.kernel("Tsit5") is not None:  # the same step loop called through numba's dispatcher
        with aot.jit_only():
            rows["sensitivity Tsit5, JIT kernel"] = (
                median_time(lambda: solve(prob, "Tsit5", t_eval=t_eval, **kw), repeat * 10),
                np.abs(solve(prob, "Tsit5", t_eval=t_eval, **kw).y - ref).max(),
            )
    for m in ("RK45", "DOP853", "LSODA"):
        sol = solve_ivp(fun, (0, 10), [1.0, 1.0], method=m, t_eval=t_eval, **kw)
        t = median_time(
            lambda m=m: solve_ivp(fun, (0, 10), [1.0, 1.0], method=m, t_eval=t_eval, **kw), repeat
        )
        rows[f"scipy {m}"] = (t, np.abs(sol.y.T - ref).max())
    if numbalsoda is not None:  # pragma: no cover - optional peer
        rows.update(numbalsoda_rows(p, t_eval, ref))
    report(
        "Lotka-Volterra, t in [0, 10], 101 outputs, rtol 1e-6, atol 1e-8", rows, "sensitivity Tsit5"
    )
    return rows


def numbalsoda_rows(p, t_eval, ref):  # pragma: no cover - optional peer
    """numbalsoda's DOP853 and LSODA, each timed in a fresh process (see ``_numbalsoda``)."""
    out = {}
    for name, case in (("numbalsoda DOP853", "lv_dop853"), ("numbalsoda LSODA", "lv_lsoda")):
        t, _, usol = isolated(case, 200)
        out[name] = (t, np.abs(usol - ref).max())
    return out


# --- Robertson -------------------------------------------------------------------------


def robertson(repeat):
    p = np.array([0.04, 1e4, 3e7])
    t_eval = 0.4 * 10.0 ** np.arange(0, 12)  # 0.4, 4, ..., 4e10
    atol = np.array([1e-8, 1e-14, 1e-6])
    prob = make_problem(rober, [1.0, 0.0, 0.0], (0.0, 4e10), p, rober_jac)

    def fun(t, y):
        a = -p[0] * y[0] + p[1] * y[1] * y[2]
        c = p[2] * y[1] ** 2
        return [a, -a - c, c]

    def jac(t, y):
        return np.array(
            [
                [-p[0], p[1] * y[2], p[1] * y[1]],
                [p[0], -p[1] * y[2] - 2 * p[2] * y[1], -p[1] * y[1]],
                [0.0, 2 * p[2] * y[1], 0.0],
            ]
        )

    ref = solve_ivp(
        fun,
        (0, 4e10),
        [1.0, 0.0, 0.0],
        method="Radau",
        jac=jac,
        t_eval=t_eval,
        rtol=1e-12,
        atol=atol * 1e-8,
    ).y.T
    scale = atol + 1e-4 * np.abs(ref)

    def err(y):  # in units of the requested tolerance
        return np.abs(y - ref).max() if y.shape != ref.shape else np.max(np.abs(y - ref) / scale)

    kw = dict(rtol=1e-4, atol=atol)
    rows, nfev = {}, {}
    # the BDF corrector with scipy's convergence test and Jacobian policy, for comparison
    scipy_test = BDF(nls_coef=0.0)
    for name, m in (
        ("BDF", "BDF"),
        ("BDF, scipy's Newton test", scipy_test),
        ("ESDIRK", "ESDIRK"),
        ("Rodas4", "Rodas4"),
    ):
        sol = solve(prob, m, t_eval=t_eval, **kw)
        t = median_time(lambda m=m: solve(prob, m, t_eval=t_eval, **kw), repeat * 5)
        rows[f"sensitivity {name}"] = (t, err(sol.y))
        nfev[f"ours {name}"] = sol.stats["nfev"]
        if m == "BDF":  # validated once, as numbalsoda's call is (no checks per call)
            solver = Solver(prob, m, t_eval, **kw)
            t = median_time(lambda: solver(p), repeat * 5)
            rows["sensitivity BDF (Solver reused)"] = (t, err(solver(p).y))
    for m in ("BDF", "Radau", "LSODA"):
        sol = solve_ivp(fun, (0, 4e10), [1.0, 0.0, 0.0], method=m, jac=jac, t_eval=t_eval, **kw)
        nfev[f"scipy {m}"] = sol.nfev
        t = median_time(
            lambda m=m: solve_ivp(
                fun, (0, 4e10), [1.0, 0.0, 0.0], method=m, jac=jac, t_eval=t_eval, **kw
            ),
            max(3, repeat // 4),
        )
        rows[f"scipy {m}"] = (t, err(sol.y.T))
    if sksundae is not None:
        rows.update(cvode_rows(fun, jac, t_eval, atol, err, repeat))
    if numbalsoda is not None:  # pragma: no cover - optional peer
        rows.update(numbalsoda_rober(p, t_eval, atol, err, repeat))
    report(
        "Robertson to 4e10, 11 outputs, rtol 1e-4, atol (1e-8, 1e-14, 1e-6) "
        "[err in units of atol + rtol |y|]",
        rows,
        "sensitivity BDF",
    )
    print("  f evaluations: " + ", ".join(f"{k} {v}" for k, v in nfev.items()))
    return rows


def numbalsoda_rober(p, t_eval, atol, err, repeat):  # pragma: no cover - optional peer
    """numbalsoda's LSODA on Robertson's scaled state, timed in a fresh process (see
    ``_numbalsoda``, which holds the same p, atol and outputs)."""
    t, _, y = isolated("rober_lsoda", repeat * 5)
    return {"numbalsoda LSODA": (t, err(y))}


def cvode_rows(fun, jac, t_eval, atol, err, repeat):
    def rhsfn(t, y, yp):
        yp[:] = fun(t, y)

    def run():
        solver = sksundae.cvode.CVODE(rhsfn, rtol=1e-4, atol=atol)
        return solver.solve(np.r_[0.0, t_eval], np.array([1.0, 0.0, 0.0]))

    sol = run()
    return {"scikit-sundae CVODE": (median_time(run, max(3, repeat // 2)), err(sol.y[1:]))}


# --- diffusion N = 1024 ----------------------------------------------------------------


@numba.njit(cache=True)
def fv_diffusion(t, u, k, dudt):
    """u_t = (k u_x)_x, finite volumes, u = 0 at both ends (half-cell boundary faces)."""
    n = u.shape[0]
    inv_dx2 = float(n) * float(n)
    for i in range(n):
        left = (
            2.0 * k[i] * (0.0 - u[i])
            if i == 0
            else (2.0 * k[i] * k[i - 1] / (k[i] + k[i - 1]) * (u[i - 1] - u[i]))
        )
        right = (
            2.0 * k[i] * (0.0 - u[i])
            if i == n - 1
            else (2.0 * k[i] * k[i + 1] / (k[i] + k[i + 1]) * (u[i + 1] - u[i]))
        )
        dudt[i] = (left + right) * inv_dx2


@numba.njit(cache=True)
def fv_diffusion_jac(t, u, k, J):
    n = u.shape[0]
    J[:, :] = 0.0
    inv_dx2 = float(n) * float(n)
    for i in range(n):
        if i == 0:
            J[i, i] -= 2.0 * k[i] * inv_dx2
        else:
            w = 2.0 * k[i] * k[i - 1] / (k[i] + k[i - 1]) * inv_dx2
            J[i, i - 1] += w
            J[i, i] -= w
        if i == n - 1:
            J[i, i] -= 2.0 * k[i] * inv_dx2
        else:
            w = 2.0 * k[i] * k[i + 1] / (k[i] + k[i + 1]) * inv_dx2
            J[i, i + 1] += w
            J[i, i] -= w


def diffusion_matrix(k):
    n = k.size
    kf = 2 * k[1:] * k[:-1] / (k[1:] + k[:-1]) * n * n
    diag = -np.r_[2 * k[0] * n * n, 0.0 * kf] - np.r_[kf, 0.0]
    diag[-1] -= 2 * k[-1] * n * n
    diag[1:] -= kf
    return diag, kf


def diffusion(N, repeat):
    x = (np.arange(N) + 0.5) / N
    k = 1.0 + 0.5 * np.sin(2 * np.pi * x)
    u0 = np.sin(np.pi * x) + 0.5 * np.sin(3 * np.pi * x)
    t_eval = 0.005 * np.arange(1, 21)
    diag, off = diffusion_matrix(k)
    A = sp.diags([off, diag, off], [-1, 0, 1], format="csr")
    w, V = eigh_tridiagonal(diag, off)
    ref = np.array([V @ (np.exp(w * t) * (V.T @ u0)) for t in t_eval])
    # the ODEProblem of a user (Jacobian by dual sweeps): compiled banded LU in the step loop
    prob = ODEProblem(fv_diffusion, u0, (0.0, 0.1), k, jac_sparsity=A)
    # a stand-in with a hand-written Jacobian and no derivative kernels: the Python-level
    # LAPACK band LU path (what every patterned problem with n > 128 ran before the
    # compiled banded LU)
    stand_in = make_problem(
        fv_diffusion, u0, (0.0, 0.1), k, fv_diffusion_jac, jac_sparsity=(A != 0).astype(float)
    )
    stand_in.jacobian = lambda t, y: A
    kw = dict(rtol=1e-6, atol=1e-8)
    rows = {}
    for name, pr in (("banded LU", prob), ("LAPACK, Python", stand_in)):
        for m in ("BDF", "Rodas4"):
            sol = solve(pr, m, t_eval=t_eval, **kw)
            assert sol.success, sol.message
            rows[f"sensitivity {m} ({name})"] = (
                median_time(lambda m=m, pr=pr: solve(pr, m, t_eval=t_eval, **kw), repeat),
                np.abs(sol.y - ref).max(),
            )
    out = np.empty(N)

    def fun(t, y):
        fv_diffusion(t, y, k, out)
        return out.copy()

    for m in ("BDF", "Radau"):
        sol = solve_ivp(fun, (0, 0.1), u0, method=m, jac=A, t_eval=t_eval, **kw)
        t = median_time(
            lambda m=m: solve_ivp(fun, (0, 0.1), u0, method=m, jac=A, t_eval=t_eval, **kw),
            max(3, repeat // 2),
        )
        rows[f"scipy {m} (sparse jac)"] = (t, np.abs(sol.y.T - ref).max())
    report(
        f"1-D diffusion, N = {N}, 20 outputs, rtol 1e-6, atol 1e-8",
        rows,
        "sensitivity BDF (banded LU)",
    )
    return rows


# --- first-call latency ----------------------------------------------------------------

LATENCY = """
import time; t0 = time.perf_counter()
import numpy as np
from sensitivity.ode.solve import solve
from tests.problems import make_problem, {f}, {f}_jac
prob = make_problem({f}, {y0}, {span}, {p}, {f}_jac)
sol = solve(prob, "{m}", t_eval={te})
assert sol.success
print(time.perf_counter() - t0)
"""


NEW_RHS = """
import time; t0 = time.perf_counter()
import numba, numpy as np
from sensitivity.ode.solve import solve
from tests.problems import make_problem

@numba.njit  # defined in the script: numba cannot cache it, so it compiles in every process
def f(t, y, p, dydt):
    dydt[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    dydt[1] = -p[2] * y[1] + p[3] * y[0] * y[1]

sol = solve(make_problem(f, [1.0, 1.0], (0.0, 10.0), [1.5, 1.0, 3.0, 1.0]), "Tsit5",
            t_eval=np.linspace(0, 10, 101))
assert sol.success
print(time.perf_counter() - t0)
"""


def latency():
    print("\nFirst solve in a new process (import + compile + solve), seconds")
    cases = {
        "Tsit5 Lotka-Volterra": dict(
            f="lotka_volterra",
            y0="[1.0, 1.0]",
            span="(0.0, 10.0)",
            p="[1.5, 1.0, 3.0, 1.0]",
            m="Tsit5",
            te="np.linspace(0, 10, 101)",
        ),
        "BDF Robertson": dict(
            f="rober",
            y0="[1.0, 0.0, 0.0]",
            span="(0.0, 4e10)",
            p="[0.04, 1e4, 3e7]",
            m="BDF",
            te="[4e10]",
        ),
    }
    built = bool(aot.use())  # python -m sensitivity.ode.aot has run for these sources
    kinds = [("", {"SENSITIVITY_NO_AOT": "1"})]
    if built:
        kinds.insert(0, ("ahead-of-time kernels", {}))
    else:
        print("  (no ahead-of-time kernels: run python -m sensitivity.ode.aot to measure them)")
    firsts = {}
    for kind, extra in kinds:
        # a fresh numba cache each: the JIT rows compile the integrator, the others do not
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, **extra)
            for name, case in cases.items():
                first, cached = fresh_and_cached(LATENCY.format(**case), env, ROOT)
                label = f"{name}, {kind or 'JIT kernels'}"
                firsts[label] = first
                print(
                    f"  {label:45s} fresh (empty cache) {first:6.2f} s   "
                    f"cached {cached:6.2f} s (best of 3)"
                )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, SENSITIVITY_NO_AOT="1")
        for case in cases.values():  # the JIT kernels into this cache
            seconds(LATENCY.format(**case), env, ROOT)
        print(
            f"  {'Tsit5, new script rhs':45s} JIT kernels cached, rhs compiled: "
            f"{seconds(NEW_RHS, env, ROOT):6.2f} s"
        )
        print(
            f"  {'numba floor':45s} numpy + numba + one cached one-line kernel: "
            f"{numba_floor(env):6.2f} s"
        )
    return firsts


def vs_numbalsoda(label, rows, ours, method):  # pragma: no cover - optional peer
    """Print ours / numbalsoda ``method`` with solve() and with a reused Solver."""
    nb = rows[f"numbalsoda {method}"][0]
    one_shot, reused = rows[ours][0], rows[f"{ours} (Solver reused)"][0]
    print(
        f"  {label}: ours / numbalsoda {method} = {one_shot / nb:.2f} with solve(), "
        f"{reused / nb:.2f} with a reused Solver (target <= 1.5)"
    )


def main():
    quick = "--quick" in sys.argv
    repeat = 5 if quick else 20
    lv = lotka(repeat)
    rb = robertson(repeat)
    df = diffusion(1024, max(3, repeat // 4))
    firsts = latency()
    print("\nRatios")
    ours = lv["sensitivity Tsit5"][0]
    print(f"  LV: scipy RK45 / ours = {lv['scipy RK45'][0] / ours:.0f}x (target >= 300x)")
    if "numbalsoda DOP853" in lv:  # pragma: no cover
        vs_numbalsoda("LV", lv, "sensitivity Tsit5", "DOP853")
    else:
        print(
            "  numbalsoda is not installed (its build needs a Fortran compiler); issue 4 measured "
            f"0.027-0.038 ms for its DOP853: ours / 0.033 ms = {ours / 3.3e-5:.1f} "
            "(target <= 1.5)"
        )
    ours = rb["sensitivity BDF"][0]
    print(f"  Robertson: scipy BDF / ours = {rb['scipy BDF'][0] / ours:.0f}x (target >= 100x)")
    if "numbalsoda LSODA" in rb:  # pragma: no cover
        vs_numbalsoda("Robertson", rb, "sensitivity BDF", "LSODA")
    else:
        print(
            f"  Robertson: ours / 0.19 ms (issue's numbalsoda LSODA) = {ours / 1.9e-4:.1f}"
            " (target <= 1.5)"
        )
    ours = df["sensitivity BDF (banded LU)"][0]
    print(
        f"  diffusion N=1024: scipy BDF / ours = {df['scipy BDF (sparse jac)'][0] / ours:.1f}x"
        " (target > 1)"
    )
    for label, first in firsts.items():
        print(f"  first solve, empty numba cache, {label}: {first:.2f} s (target <= 3 s)")


if __name__ == "__main__":
    main()
