"""Forward sensitivities side by side (issue 5 benchmark).

Lotka-Volterra (4 parameters, t in [0, 10], 101 outputs, rtol 1e-6, atol 1e-8) and
Robertson (3 parameters, outputs 0.4*10^k to 4e10, rtol 1e-4, atol (1e-8, 1e-14, 1e-6)).

Ours: ``SensitivitySolver`` (validated once, then called) and the one-shot
``forward_sensitivity``, each against our own plain solve (``Solver``; the one-shot call
against the one-shot ``solve``, both validating their arguments), with no hand-written
derivative code. Robertson also runs through ESDIRK (TR-BDF2) and both problems through
Rodas4 (Rosenbrock stages of the augmented system, second-order duals), each against its
own plain solve.
Peers: central finite differences of scipy ``solve_ivp``;
hand-written augmented sensitivity systems in scipy (RK45, LSODA, BDF); CasADi's CVODES
forward sensitivities when casadi is installed; numbalsoda (DOP853 for Lotka-Volterra, LSODA
for Robertson, hand-augmented systems as numba cfuncs, each timed in a fresh process: see
``_numbalsoda.py``) when installed (its build needs a Fortran compiler, e.g. Debian's
gfortran); diffrax
(float64, ``jax.jacfwd`` through ``diffeqsolve`` with ``ForwardMode``: Tsit5 for
Lotka-Volterra, Kvaerno5 for Robertson) when jax and diffrax are installed, compiled ahead
of the timing (compile seconds in its row's name).

All in one process, after warm-up, medians of repeats; each tool's error is the largest
relative deviation of dy/dp from a tight reference (the hand-augmented system in scipy
DOP853/Radau at rtol 1e-12). Run: ``python benchmarks/forward_sens.py [--quick]``.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from scipy.integrate import solve_ivp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from _timing import median_time  # noqa: E402

from sensitivity import ODEProblem, SensitivitySolver, Solver, forward_sensitivity, solve  # noqa: E402

try:
    import casadi
except ImportError:  # pragma: no cover
    casadi = None
try:
    import numbalsoda
    from _numbalsoda import isolated
except ImportError:  # pragma: no cover
    numbalsoda = None
try:  # diffrax's forward mode (jax.jacfwd through the solve), float64
    import diffrax
    import jax

    jax.config.update("jax_enable_x64", True)
except ImportError:  # pragma: no cover
    diffrax = None


def lv(t, y, p, dydt):
    dydt[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    dydt[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


def rober(t, y, p, dydt):
    dydt[0] = -p[0] * y[0] + p[1] * y[1] * y[2]
    dydt[1] = p[0] * y[0] - p[1] * y[1] * y[2] - p[2] * y[1] * y[1]
    dydt[2] = p[2] * y[1] * y[1]


# hand-written augmented systems, what users of scipy write today ---------------------------


def lv_aug(t, z, p):
    y, S = z[:2], z[2:].reshape(2, 4)
    J = np.array([[p[0] - p[1] * y[1], -p[1] * y[0]], [p[3] * y[1], -p[2] + p[3] * y[0]]])
    fp = np.array([[y[0], -y[0] * y[1], 0, 0], [0, 0, -y[1], y[0] * y[1]]])
    f = [p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]]
    return np.concatenate([f, (J @ S + fp).ravel()])


def rober_aug(t, z, p):
    y, S = z[:3], z[3:].reshape(3, 3)
    J = np.array(
        [
            [-p[0], p[1] * y[2], p[1] * y[1]],
            [p[0], -p[1] * y[2] - 2 * p[2] * y[1], -p[1] * y[1]],
            [0.0, 2 * p[2] * y[1], 0.0],
        ]
    )
    fp = np.array(
        [[-y[0], y[1] * y[2], 0.0], [y[0], -y[1] * y[2], -(y[1] ** 2)], [0.0, 0.0, y[1] ** 2]]
    )
    f = [
        -p[0] * y[0] + p[1] * y[1] * y[2],
        p[0] * y[0] - p[1] * y[1] * y[2] - p[2] * y[1] ** 2,
        p[2] * y[1] ** 2,
    ]
    return np.concatenate([f, (J @ S + fp).ravel()])


def augmented(fun, y0, m, t_span, ts, p, method, rtol, atol):
    n = len(y0)
    z0 = np.concatenate([y0, np.zeros(n * m)])
    atol = np.concatenate([np.broadcast_to(atol, (n,)), np.tile(np.broadcast_to(atol, (n,)), m)])
    sol = solve_ivp(fun, t_span, z0, method=method, t_eval=ts, args=(p,), rtol=rtol, atol=atol)
    return sol.y[n:].T.reshape(len(ts), n, m)


def finite_differences(fun, y0, t_span, ts, p, method, rtol, atol, rel=1e-6):
    cols = []
    for j in range(p.size):
        e = np.zeros(p.size)
        e[j] = rel * abs(p[j])
        hi = solve_ivp(
            fun, t_span, y0, method=method, t_eval=ts, args=(p + e,), rtol=rtol, atol=atol
        ).y.T
        lo = solve_ivp(
            fun, t_span, y0, method=method, t_eval=ts, args=(p - e,), rtol=rtol, atol=atol
        ).y.T
        cols.append((hi - lo) / (2 * e[j]))
    return np.stack(cols, -1)


def casadi_sens(kind, y0, ts, p, rtol, atol):
    x = casadi.SX.sym("x", len(y0))
    q = casadi.SX.sym("p", len(p))
    if kind == "lv":
        ode = casadi.vertcat(q[0] * x[0] - q[1] * x[0] * x[1], -q[2] * x[1] + q[3] * x[0] * x[1])
    else:
        ode = casadi.vertcat(
            -q[0] * x[0] + q[1] * x[1] * x[2],
            q[0] * x[0] - q[1] * x[1] * x[2] - q[2] * x[1] ** 2,
            q[2] * x[1] ** 2,
        )
    opts = {"abstol": float(np.min(atol)), "reltol": rtol}
    F = casadi.integrator("F", "cvodes", {"x": x, "p": q, "ode": ode}, 0.0, list(ts), opts)
    psym = casadi.MX.sym("p", len(p))
    xf = F(x0=casadi.DM(y0), p=psym)["xf"]
    J = casadi.Function("J", [psym], [casadi.jacobian(casadi.vec(xf), psym)])
    nt, n, m = len(ts), len(y0), len(p)

    def run():
        # vec(xf) is column-major over (n, nt): row (i + n*k)
        return np.asarray(J(p)).reshape(nt, n, m)

    return run


def diffrax_sens(kind, y0, t_span, ts, p, rtol, atol):
    """diffrax dy/dp at ``ts``, (nt, n, m): ``jax.jacfwd`` through ``diffeqsolve`` with
    ``ForwardMode``; Tsit5 for Lotka-Volterra, Kvaerno5 for Robertson, PIDController.

    Returns ``(run, compile seconds)``; ``run`` calls the ahead-of-time compiled function.
    """
    jnp = jax.numpy
    if kind == "lv":

        def f(t, x, q):
            return jnp.stack([q[0] * x[0] - q[1] * x[0] * x[1], -q[2] * x[1] + q[3] * x[0] * x[1]])

        solver = diffrax.Tsit5()
    else:

        def f(t, x, q):
            return jnp.stack(
                [
                    -q[0] * x[0] + q[1] * x[1] * x[2],
                    q[0] * x[0] - q[1] * x[1] * x[2] - q[2] * x[1] ** 2,
                    q[2] * x[1] ** 2,
                ]
            )

        solver = diffrax.Kvaerno5()

    def states(q):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(f),
            solver,
            float(t_span[0]),
            float(t_span[1]),
            None,
            jnp.asarray(y0),
            args=q,
            saveat=diffrax.SaveAt(ts=jnp.asarray(ts)),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=jnp.asarray(atol)),
            adjoint=diffrax.ForwardMode(),
            max_steps=100_000,
        )
        return sol.ys

    t0 = time.perf_counter()
    compiled = jax.jit(jax.jacfwd(states)).lower(jnp.asarray(p)).compile()
    t_compile = time.perf_counter() - t0
    return (lambda: np.asarray(compiled(jnp.asarray(p)))), t_compile


def error(S, ref):
    return float(np.max(np.abs(S - ref)) / np.max(np.abs(ref)))


def table(title, rows, ours_key, pairs=None):
    """Print the rows; ``pairs`` maps a row to the plain-solve row it is compared with."""
    pairs = pairs or {}
    print(f"\n{title}")
    head = (
        f"  {'tool':52s} {'median':>10s} {'ratio':>9s} {'min':>10s} {'ratio':>9s} {'rel err':>8s}"
    )
    print(head + "   (ratios: vs our plain solve)")
    for name, ((t, t_min), err) in rows.items():
        ref = pairs.get(name, ours_key)
        (r, r_min), _ = rows[ref]
        mark = "" if ref == ours_key else " *"
        print(
            f"  {name:52s} {t * 1e3:8.3f}ms {t / r:8.2f}x {t_min * 1e3:8.3f}ms "
            f"{t_min / r_min:8.2f}x {err:8.1e}{mark}"
        )
    if pairs:
        print("  * against the matching plain solve: " + "; ".join(sorted(set(pairs.values()))))


def lotka(repeat):
    p = np.array([1.5, 1.0, 3.0, 1.0])
    y0 = np.array([1.0, 1.0])
    ts = np.linspace(0.0, 10.0, 101)
    rtol, atol = 1e-6, 1e-8
    prob = ODEProblem(lv, y0, (0.0, 10.0), p)
    ref = augmented(lv_aug, y0, 4, (0, 10), ts, p, "DOP853", 1e-12, 1e-14)
    plain = Solver(prob, "Tsit5", ts, rtol, atol)
    rows = {"ours: Solver() plain solve, Tsit5": (median_time(plain, repeat), 0.0)}
    rows["ours: solve() plain, one-shot"] = (
        median_time(lambda: solve(prob, method="Tsit5", t_eval=ts, rtol=rtol, atol=atol), repeat),
        0.0,
    )
    for ec in ("partial", "full"):
        sv = SensitivitySolver(prob, ts, "p", "Tsit5", rtol, atol, ec)
        rows[f"ours: SensitivitySolver() Tsit5 {ec}"] = (
            median_time(sv, repeat),
            error(sv().dy_dp, ref),
        )
    fs = lambda: forward_sensitivity(prob, t_eval=ts, method="Tsit5", rtol=rtol, atol=atol)  # noqa: E731
    rows["ours: forward_sensitivity() one-shot, full"] = (
        median_time(fs, repeat),
        error(fs().dy_dp, ref),
    )

    def fun(t, y, p):
        return [p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]]

    r = max(3, repeat // 10)
    for meth in ("RK45", "LSODA"):
        run = lambda meth=meth: augmented(lv_aug, y0, 4, (0, 10), ts, p, meth, rtol, atol)  # noqa: E731
        rows[f"scipy {meth}, hand-augmented system"] = (median_time(run, r), error(run(), ref))
    run = lambda: finite_differences(fun, y0, (0, 10), ts, p, "RK45", rtol, atol)  # noqa: E731
    rows["scipy RK45, central differences (8 solves)"] = (median_time(run, r), error(run(), ref))
    if casadi is not None:
        run = casadi_sens("lv", y0, ts, p, rtol, atol)
        rows["CasADi CVODES forward sensitivities"] = (median_time(run, r), error(run(), ref))
    if numbalsoda is not None:  # pragma: no cover
        t, t_min, S = isolated("lv_sens_dop853", repeat)  # a fresh process: see _numbalsoda
        rows["numbalsoda DOP853, hand-augmented system"] = (
            (t, t_min),
            error(S.reshape(len(ts), 2, 4), ref),
        )
    if diffrax is not None:
        run, t_jit = diffrax_sens("lv", y0, (0, 10), ts, p, rtol, atol)
        name = f"diffrax Tsit5 ForwardMode, jacfwd (jit {t_jit:.1f} s)"
        rows[name] = (median_time(run, r), error(run(), ref))
    pairs = {"ours: forward_sensitivity() one-shot, full": "ours: solve() plain, one-shot"}
    plain = Solver(prob, "Rodas4", ts, rtol, atol)
    rows["ours: Solver() plain solve, Rodas4"] = (median_time(plain, repeat), 0.0)
    for ec in ("partial", "full"):
        sv = SensitivitySolver(prob, ts, "p", "Rodas4", rtol, atol, ec)
        name = f"ours: SensitivitySolver() Rodas4 {ec}"
        rows[name] = (median_time(sv, repeat), error(sv().dy_dp, ref))
        pairs[name] = "ours: Solver() plain solve, Rodas4"
    table("Lotka-Volterra, 4 parameters", rows, "ours: Solver() plain solve, Tsit5", pairs)


def robertson(repeat):
    p = np.array([0.04, 1e4, 3e7])
    y0 = np.array([1.0, 0.0, 0.0])
    ts = 0.4 * 10.0 ** np.arange(0, 11)
    rtol, atol = 1e-4, np.array([1e-8, 1e-14, 1e-6])
    prob = ODEProblem(rober, y0, (0.0, 4e10), p)
    ref = augmented(
        rober_aug, y0, 3, (0, 4e10), ts, p, "Radau", 1e-10, np.array([1e-14, 1e-20, 1e-12])
    )
    scale = p[None, None, :]  # compare d y / d log p: the parameters span 9 decades
    rows, pairs = {}, {}
    for meth in ("BDF", "ESDIRK", "Rodas4"):
        plain = Solver(prob, meth, ts, rtol, atol)
        key = f"ours: Solver() plain solve, {meth}"
        rows[key] = (median_time(plain, repeat), 0.0)
        kind = "augmented stages" if meth == "Rodas4" else "staggered"
        for ec in ("partial", "full"):
            sv = SensitivitySolver(prob, ts, "p", meth, rtol, atol, ec)
            name = f"ours: SensitivitySolver() {meth} {kind}, {ec}"
            rows[name] = (median_time(sv, repeat), error(sv().dy_dp * scale, ref * scale))
            pairs[name] = key
    pairs["ours: Solver() plain solve, ESDIRK"] = "ours: Solver() plain solve, BDF"
    pairs["ours: Solver() plain solve, Rodas4"] = "ours: Solver() plain solve, BDF"

    def fun(t, y, p):
        return [
            -p[0] * y[0] + p[1] * y[1] * y[2],
            p[0] * y[0] - p[1] * y[1] * y[2] - p[2] * y[1] ** 2,
            p[2] * y[1] ** 2,
        ]

    r = max(3, repeat // 10)
    for meth in ("BDF", "LSODA"):
        run = lambda meth=meth: augmented(rober_aug, y0, 3, (0, 4e10), ts, p, meth, rtol, atol)  # noqa: E731
        rows[f"scipy {meth}, hand-augmented system"] = (
            median_time(run, r),
            error(run() * scale, ref * scale),
        )
    run = lambda: finite_differences(fun, y0, (0, 4e10), ts, p, "BDF", rtol, atol)  # noqa: E731
    rows["scipy BDF, central differences (6 solves)"] = (
        median_time(run, r),
        error(run() * scale, ref * scale),
    )
    if casadi is not None:
        run = casadi_sens("rober", y0, ts, p, rtol, atol)
        rows["CasADi CVODES forward sensitivities"] = (
            median_time(run, r),
            error(run() * scale, ref * scale),
        )
    if numbalsoda is not None:  # pragma: no cover
        t, t_min, S = isolated("rober_sens_lsoda", repeat)
        rows["numbalsoda LSODA, hand-augmented system"] = (
            (t, t_min),
            error(S.reshape(len(ts), 3, 3) * scale, ref * scale),
        )
    if diffrax is not None:
        run, t_jit = diffrax_sens("rober", y0, (0, 4e10), ts, p, rtol, atol)
        name = f"diffrax Kvaerno5 ForwardMode, jacfwd (jit {t_jit:.1f} s)"
        rows[name] = (median_time(run, r), error(run() * scale, ref * scale))
    table(
        "Robertson to 4e10, 3 parameters (errors of dy/dlog p)",
        rows,
        "ours: Solver() plain solve, BDF",
        {k: v for k, v in pairs.items() if "ESDIRK" in k or "Rodas4" in k},
    )


if __name__ == "__main__":
    repeat = 20 if "--quick" in sys.argv else 100
    lotka(repeat)
    robertson(repeat)
