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

JAX peers, when jax (and diffrax) are installed, in the same process with float64 on:
JAX's ``jax.experimental.ode.odeint`` gradient (its adjoint integrates the forward equation
backwards with explicit Dopri5 alongside the adjoint: a "backsolve") and diffrax's Kvaerno5
with ``RecursiveCheckpointAdjoint`` (reverse-mode through the stored steps) and
``PIDController(rtol=1e-6, atol=1e-8)``, its default dense Jacobian and LU; Lotka-Volterra
also with diffrax Tsit5. Each is jit-compiled ahead of the timing (``lower().compile()``;
compile seconds printed separately), then timed as the median of repeats. A size whose
one call is estimated above ``PEER_LIMIT`` seconds (the previous size's time scaled by
(N / N_prev)^3: explicit steps grow like N^2 at N per step, dense LU like N^3) is skipped
and printed as "skip (est. ...)"; nothing skipped is reported as measured. Peak memory is
not shown for them (XLA's buffers are outside tracemalloc). On a loaded shared machine
XLA's CPU thread pool makes them erratic (diffrax Kvaerno5 at N = 256: 0.5 s to 120 s
per gradient, the same computation); run the benchmark under ``taskset -c 1`` (every tool
on one core; ours and CasADi are single-threaded) for figures that repeat.

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
from _timing import median  # noqa: E402

import sensitivity as sn  # noqa: E402

PEER_LIMIT = 60.0  # seconds: a JAX peer's size whose one call is estimated above it is skipped


def jax_modules():
    """``(jax, jax.numpy, odeint, diffrax)`` with float64 on; None for what is not installed."""
    try:
        import jax
    except ImportError:
        return None, None, None, None
    jax.config.update("jax_enable_x64", True)  # before any JAX array exists
    import jax.numpy as jnp
    from jax.experimental.ode import odeint

    try:
        import diffrax
    except ImportError:
        diffrax = None
    return jax, jnp, odeint, diffrax


JAX, JNP, ODEINT, DIFFRAX = jax_modules()


def jax_time(fn, *args):
    """Compile the jitted ``fn`` for ``args``, then time it.

    Returns ``(compile seconds, median seconds, output)``: the first call after compiling is
    the warm-up; a call above 10 s is timed once (a repeat would double a long run).
    """
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = JAX.block_until_ready(compiled(*args))
    first = time.perf_counter() - t0
    if first > 10.0:
        return t_compile, first, out
    times = []
    for _ in range(7 if first < 1.0 else 3):
        t0 = time.perf_counter()
        JAX.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return t_compile, float(np.median(times)), out


def lv(t, y, p, dydt):
    dydt[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    dydt[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


def median_time(fn, repeat=50):
    return median(fn, repeat, warmup=2)


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
    peers = lv_jax_peers(p, np.array([1.0, 1.0]), ts, data)
    rows += [(f"{name} (jit {t_jit:.1f} s)", t, g) for _, name, t_jit, t, g in peers]
    print("Lotka-Volterra: gradient of an L2 misfit, 4 parameters + 2 initial values")
    print(f"  {'what':52s} {'median':>10s} {'/ solve()':>10s} {'rel err':>9s}")
    for name, t, g in rows:
        err = "" if g is None else f"{np.abs(g - ref).max() / np.abs(ref).max():9.1e}"
        print(f"  {name:52s} {t * 1e3:8.3f}ms {t / t_solve1:9.2f}x {err}")
    record = dict(solve=t_solve1, discrete=t_adj)
    for key, name, _, t, g in peers:
        print(f"  our discrete adjoint / {name}: {t_adj / t:.3f}")
        record[key], record[key + "_err"] = t, float(np.abs(g - ref).max() / np.abs(ref).max())
    return record


def lv_jax_peers(p, y0, ts, data):
    """JAX odeint and diffrax Tsit5 gradients of the same misfit in p and y0.

    Returns ``[(key, name, compile seconds, median seconds, grad_p)]`` (empty without jax).
    """
    if JAX is None:
        return []
    jnp = JNP

    def f(y, p):
        return jnp.stack([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])

    def odeint_obs(p, y0):
        return ODEINT(lambda y, t, q: f(y, q), y0, jnp.asarray(ts), p, rtol=1e-6, atol=1e-8)

    peers = [("jax_odeint", "jax.experimental.ode.odeint adjoint", odeint_obs)]
    if DIFFRAX is not None:
        dfx = DIFFRAX

        def tsit5_obs(p, y0):
            sol = dfx.diffeqsolve(
                dfx.ODETerm(lambda t, y, q: f(y, q)),
                dfx.Tsit5(),
                ts[0],
                ts[-1],
                None,
                y0,
                args=p,
                saveat=dfx.SaveAt(ts=jnp.asarray(ts)),
                stepsize_controller=dfx.PIDController(rtol=1e-6, atol=1e-8),
                adjoint=dfx.RecursiveCheckpointAdjoint(),
            )
            return sol.ys

        peers.append(("diffrax_tsit5", "diffrax Tsit5, RecursiveCheckpointAdjoint", tsit5_obs))
    out = []
    for key, name, obs in peers:

        def loss(p, y0, obs=obs):
            return 0.5 * jnp.sum((obs(p, y0) - data) ** 2)

        grad = JAX.jit(JAX.grad(loss, argnums=(0, 1)))
        t_jit, t, (g_p, _) = jax_time(grad, jnp.asarray(p), jnp.asarray(y0))
        out.append((key, name, t_jit, t, np.asarray(g_p)))
    return out


def main():
    lv_record = lotka_volterra()
    print()
    max_n = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    rows = diffusion_table([n for n in (16, 64, 256, 1024, 4096) if n <= max_n])
    print("json:", json.dumps({"diffusion": rows, "adjoint_lotka_volterra": lv_record}))
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
    peers = jax_diffusion_peers()
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
        for peer in peers:
            rec.update(peer.measure(n, u0, k, sensors, ts, data, g_ref, t_grad))
        rows.append(rec)
        print(row, flush=True)
    if peers:
        print_jax_peers(rows, peers)
    return rows


def heat_jax(u, k):
    """The right-hand side of :func:`_diffusion.heat` in jax.numpy."""
    jnp, n = JNP, u.shape[0]
    inv = n * n
    kf = 2 * k[:-1] * k[1:] / (k[:-1] + k[1:])
    flux = kf * (u[1:] - u[:-1]) * inv
    zero = jnp.zeros(1)
    du = jnp.concatenate([flux, zero]) - jnp.concatenate([zero, flux])
    return du.at[0].add(-2 * k[0] * u[0] * inv).at[-1].add(-2 * k[-1] * u[-1] * inv)


def odeint_states(k, u0, ts):
    """JAX odeint (Dopri5) at ``ts``, (nt, N); its gradient is the backsolve adjoint."""
    tt = JNP.concatenate([JNP.zeros(1), ts])
    return ODEINT(lambda u, t, kk: heat_jax(u, kk), u0, tt, k, rtol=1e-6, atol=1e-8)[1:]


def kvaerno5_states(k, u0, ts):
    """diffrax Kvaerno5 at ``ts``, (nt, N), reverse mode through checkpointed steps."""
    dfx = DIFFRAX
    sol = dfx.diffeqsolve(
        dfx.ODETerm(lambda t, u, kk: heat_jax(u, kk)),
        dfx.Kvaerno5(),
        0.0,
        0.1,
        None,
        u0,
        args=k,
        saveat=dfx.SaveAt(ts=ts),
        stepsize_controller=dfx.PIDController(rtol=1e-6, atol=1e-8),
        adjoint=dfx.RecursiveCheckpointAdjoint(),
    )
    return sol.ys


class JaxPeer:
    """A JAX gradient of the diffusion misfit: timings, error and the size limit.

    Parameters
    ----------
    key : str
        Prefix of its fields in the ``json:`` record.
    title : str
    states : callable
        ``states(k (N,), u0 (N,), ts (nt,)) -> (nt, N)``, traceable by JAX.
    """

    def __init__(self, key, title, states):
        self.key, self.title, self.states = key, title, states
        self.last = None  # (N, seconds of its slowest call) at the last measured size

    def measure(self, n, u0, k, sensors, ts, data, g_ref, t_ours):
        """Fields ``key``, ``key_solve``, ``key_err``, ``key_compile``, ``key_ours_over``.

        Or only ``key_skipped_est`` (the estimated seconds of one call) above the limit.
        """
        key, jnp = self.key, JNP
        if self.last is not None:
            est = self.last[1] * (n / self.last[0]) ** 3
            if est > PEER_LIMIT:
                return {key + "_skipped_est": est}
        u0j, tsj, sens = jnp.asarray(u0), jnp.asarray(ts), jnp.asarray(sensors)

        def observe(kk):
            return self.states(kk, u0j, tsj)[:, sens]

        def loss(kk):
            return 0.5 * jnp.sum((observe(kk) - data) ** 2)

        kj = jnp.asarray(k)
        _, t_solve, _ = jax_time(JAX.jit(observe), kj)
        t_jit, t_grad, g = jax_time(JAX.jit(JAX.grad(loss)), kj)
        self.last = (n, max(t_solve, t_grad))
        return {
            key: t_grad,
            key + "_solve": t_solve,
            key + "_err": _rel(np.asarray(g), g_ref),
            key + "_compile": t_jit,
            key + "_ours_over": t_ours / t_grad,
        }


def jax_diffusion_peers():
    """The JAX peers that are installed."""
    if JAX is None:
        return []
    peers = [JaxPeer("jax_odeint", "JAX odeint, Dopri5 backsolve adjoint", odeint_states)]
    if DIFFRAX is not None:
        title = "diffrax Kvaerno5, RecursiveCheckpointAdjoint"
        peers.append(JaxPeer("diffrax_kvaerno5", title, kvaerno5_states))
    return peers


def print_jax_peers(rows, peers):
    """The JAX peers' table: solve, gradient, ratio, error, compile, ours/peer."""
    print()
    print("JAX peers, same N, float64; seconds: medians after ahead-of-time compilation (jit:")
    print("compile seconds of the gradient); ours/peer: our discrete BDF adjoint's gradient")
    print(f"time / the peer's; skip (est.): one call estimated above {PEER_LIMIT:.0f} s, not run")
    head = f"{'N':>5s} | {'ours':>7s}"
    sub = f"{'':5s} | {'grad':>7s}"
    for peer in peers:
        head += f" | {peer.title:^45s}"
        sub += (
            f" | {'solve':>7s} {'grad':>7s} {'ratio':>5s} {'err':>7s} {'jit':>5s} {'ours/peer':>9s}"
        )
    print(head)
    print(sub)
    for rec in rows:
        line = f"{rec['n']:5d} | {rec['discrete']:7.4f}"
        for peer in peers:
            key = peer.key
            if key + "_skipped_est" in rec:
                line += f" | {'skip (est. %.0f s)' % rec[key + '_skipped_est']:>45s}"
                continue
            t, ts = rec[key], rec[key + "_solve"]
            line += f" | {ts:7.4f} {t:7.4f} {t / ts:5.1f} {rec[key + '_err']:7.1e}"
            line += f" {rec[key + '_compile']:5.1f} {rec[key + '_ours_over']:9.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
