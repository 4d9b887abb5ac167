"""2-D acoustic FWI: forward modelling, gradient and memory (issue 8 benchmark).

One shot of the Camembert set-up (:func:`sensitivity.pde.fwi.camembert`: 181 x 181
computational nodes, ~640 steps, source in the middle of the left line, 101
receivers). Prints, as medians of repeats after a warm-up in one process:

* forward modelling time;
* gradient time and gradient/forward with every step's image stored (a fresh
  store per call, ``workspace=False``, and the default store kept between
  calls), and with a checkpoint budget of 1/10 of the stored wavefield
  (binomial schedule), with its recomputation factor;
* peak memory (tracemalloc) of each gradient (store-all: with a fresh store);
* the same stencil in vectorised numpy (:func:`numpy_forward` below: padded
  arrays updated in place with slices, as one would write it by hand) and the
  speed-up over it;
* Devito (if installed): forward and gradient of the same equation (same
  grid, time step, 4th-order stencil, sponge, float64, single thread).

Every figure is single-threaded: our kernels have no parallel loops, numpy's
slice arithmetic runs on one thread and Devito runs without OpenMP.

Targets (issue 8): gradient <= 3x forward store-all, <= 5x with the budget;
forward >= 10x faster than numpy. The store-all target applies to the default
store, kept between calls as an inversion makes them (Devito's saved wavefield
is likewise allocated once); a new store each call adds the page faults of
~170 MB of fresh memory, printed as its own line. The machine may be shared: functions compared
with each other are timed round-robin (same load), and ratios of minima are
printed beside ratios of medians.

Run: python benchmarks/fwi.py [--repeats N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np

from sensitivity.pde.fwi import camembert
from sensitivity.pde.points import HALO


def interleaved_times(funs, repeats):
    """Median and minimum time of each function, measured round-robin.

    The machine is shared: timing the functions in turn, repeat by repeat, puts
    them under the same load, so their ratios are steadier than those of
    back-to-back medians.
    """
    for f in funs.values():
        f()  # warm-up (compilation, caches)
    times = {k: [] for k in funs}
    for _ in range(repeats):
        for k, f in funs.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: (float(np.median(v)), float(np.min(v))) for k, v in times.items()}


def peak_bytes(fun):
    tracemalloc.start()
    try:
        fun()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def numpy_forward(shot, m, q):
    """The same scheme in vectorised numpy: slices of padded arrays, no Python loops
    over nodes (the baseline of the issue's ">= 10x faster than numpy" target). The
    update is ours, ``u' = alpha (u - u_) + u_ + A^{-1} L u`` with the same 4th-order
    Laplacian, as one would write it by hand."""
    ia, c, _ = shot.coefficients(m)
    al = ia * c  # A^{-1} C
    cs = shot._cs()
    nx, nz = shot.shape
    up, u = (np.zeros((nx + 4, nz + 4)) for _ in range(2))
    C = (slice(HALO, -HALO), slice(HALO, -HALO))
    si, sj = shot.sources.idx[..., 0] + HALO, shot.sources.idx[..., 1] + HALO
    sw = shot.sources.weights / (shot.spacing[0] * shot.spacing[1]) * ia[si - HALO, sj - HALO]
    ri, rj = shot.receivers.idx[..., 0] + HALO, shot.receivers.idx[..., 1] + HALO
    rw = shot.receivers.weights
    data = np.empty((shot.nt, shot.receivers.n))
    for n in range(shot.nt):
        data[n] = np.sum(rw * u[ri, rj], axis=1)
        if n == shot.nt - 1:
            break
        lap = (cs[0] + cs[3]) * u[C]
        lap += cs[1] * (u[1:-3, 2:-2] + u[3:-1, 2:-2])
        lap += cs[2] * (u[:-4, 2:-2] + u[4:, 2:-2])
        lap += cs[4] * (u[2:-2, 1:-3] + u[2:-2, 3:-1])
        lap += cs[5] * (u[2:-2, :-4] + u[2:-2, 4:])
        up[C] = al * (u[C] - up[C]) + up[C] + ia * lap  # u^{n+1} over u^{n-1}
        np.add.at(up, (si, sj), sw * q[n][:, None])
        up, u = u, up
    return data


def devito_times(problem, shot, m, q, d_obs, repeats):
    """Forward and gradient times of the same modelling written in Devito."""
    try:
        from devito import (
            Eq,
            Function,
            Grid,
            Inc,
            Operator,
            SparseTimeFunction,
            TimeFunction,
            configuration,
            solve,
        )
    except ImportError:
        return None
    configuration["log-level"] = "ERROR"
    nx, nz = shot.shape
    hx, hz = shot.spacing
    nt, dt = shot.nt, shot.dt
    grid = Grid(shape=(nx, nz), extent=((nx - 1) * hx, (nz - 1) * hz), dtype=np.float64)
    s = grid.stepping_dim.spacing
    mf = Function(name="m", grid=grid, space_order=4)
    mf.data[:] = m
    damp = Function(name="damp", grid=grid, space_order=4)
    damp.data[:] = shot.sigma
    u = TimeFunction(name="u", grid=grid, time_order=2, space_order=4, save=nt)
    src = SparseTimeFunction(name="src", grid=grid, npoint=1, nt=nt,
                             coordinates=shot.sources.positions)  # fmt: skip
    src.data[:] = q / (hx * hz)
    rec = SparseTimeFunction(name="rec", grid=grid, npoint=shot.receivers.n, nt=nt,
                             coordinates=shot.receivers.positions)  # fmt: skip
    pde = mf * u.dt2 - u.laplace + mf * damp * u.dt
    fwd = Operator(
        [Eq(u.forward, solve(pde, u.forward))]
        + src.inject(field=u.forward, expr=src * s**2 / mf)
        + rec.interpolate(expr=u)
    )
    v = TimeFunction(name="v", grid=grid, time_order=2, space_order=4)
    res = SparseTimeFunction(name="res", grid=grid, npoint=shot.receivers.n, nt=nt,
                             coordinates=shot.receivers.positions)  # fmt: skip
    grad = Function(name="grad", grid=grid)
    pde_a = mf * v.dt2 - v.laplace + mf * damp * v.dt.T
    adj = Operator(
        [Eq(v.backward, solve(pde_a, v.backward))]
        + res.inject(field=v.backward, expr=res * s**2 / mf)
        + [Inc(grad, -u.dt2 * v)]
    )

    def forward():
        u.data[:] = 0.0
        fwd.apply(time_M=nt - 2, dt=dt)
        return rec.data.copy()

    def gradient():
        d = forward()
        res.data[:] = d - d_obs
        v.data[:] = 0.0
        grad.data[:] = 0.0
        adj.apply(time_m=1, time_M=nt - 2, dt=dt)
        return grad.data.copy()

    d = forward()
    ours = shot.forward(m, q)
    agree = float(np.linalg.norm(d - ours) / np.linalg.norm(ours))
    T = interleaved_times(
        {
            "forward": forward,
            "gradient": gradient,
            "ours_forward": lambda: shot.forward(m, q),
            "ours_gradient": lambda: shot.gradient(m, q, d_obs),
        },
        max(3, repeats // 2),
    )
    return {
        "forward_s": T["forward"][0],
        "gradient_s": T["gradient"][0],
        "forward_vs_ours": T["forward"][0] / T["ours_forward"][0],
        "gradient_vs_ours": T["gradient"][0] / T["ours_gradient"][0],
        "data_rel_diff_vs_ours": agree,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end")
    ap.add_argument("--no-devito", action="store_true")
    args = ap.parse_args(argv)

    problem, v_true, v0 = camembert()
    shot = problem.shot(problem.n_shots // 2)
    q = problem.wavelet[:, None]
    m0 = problem.extend(v0) ** -2.0
    d_obs = shot.forward(problem.extend(v_true) ** -2.0, q)
    wave_bytes = shot.nt * shot.wavefield_bytes
    budget = wave_bytes // 10
    r = args.repeats

    T = interleaved_times(
        {
            "forward": lambda: shot.forward(m0, q),
            "store_all": lambda: shot.gradient(m0, q, d_obs, workspace=False),
            "workspace": lambda: shot.gradient(m0, q, d_obs),
            "budget": lambda: shot.gradient(m0, q, d_obs, memory_budget=budget),
        },
        r,
    )
    t_fwd, t_all, t_ws, t_bud = (T[k][0] for k in ("forward", "store_all", "workspace", "budget"))
    mins = {k: T[k][1] / T["forward"][1] for k in T}
    res_bud = shot.gradient(m0, q, d_obs, memory_budget=budget)
    res_all = shot.gradient(m0, q, d_obs)
    same = bool(np.array_equal(res_bud.grad, res_all.grad))
    p_fwd = peak_bytes(lambda: shot.forward(m0, q))
    p_all = peak_bytes(lambda: shot.gradient(m0, q, d_obs, workspace=False))
    p_bud = peak_bytes(lambda: shot.gradient(m0, q, d_obs, memory_budget=budget))
    d_np = numpy_forward(shot, m0, q)
    np_diff = float(np.abs(d_np - shot.forward(m0, q)).max() / np.abs(d_np).max())
    Tn = interleaved_times(
        {"numpy": lambda: numpy_forward(shot, m0, q), "ours": lambda: shot.forward(m0, q)},
        max(3, r // 3),
    )
    t_np, np_ratio = Tn["numpy"][0], Tn["numpy"][0] / Tn["ours"][0]

    out = {
        "grid": list(shot.shape),
        "nt": shot.nt,
        "dt_s": shot.dt,
        "forward_s": t_fwd,
        "gradient_store_all_s": t_all,
        "gradient_store_all_ratio": t_all / t_fwd,
        "gradient_store_all_workspace_s": t_ws,
        "gradient_store_all_workspace_ratio": t_ws / t_fwd,
        "gradient_budget_s": t_bud,
        "gradient_budget_ratio": t_bud / t_fwd,
        "ratios_of_minima": mins,
        "budget_bytes": budget,
        "budget_schedule": res_bud.stats["schedule"],
        "budget_recompute_factor": res_bud.stats["recompute_factor"],
        "budget_gradient_identical": same,
        "peak_forward_bytes": p_fwd,
        "peak_store_all_bytes": p_all,
        "peak_budget_bytes": p_bud,
        "wavefield_bytes": wave_bytes,
        "numpy_forward_s": t_np,
        "speedup_vs_numpy": np_ratio,
        "numpy_data_max_rel_diff": np_diff,
    }
    dev = None if args.no_devito else devito_times(problem, shot, m0, q, d_obs, r)
    if dev:
        out.update({f"devito_{k}": v for k, v in dev.items()})

    mb = 1e-6
    print(f"Camembert, one shot: grid {shot.shape[0]}x{shot.shape[1]}, nt = {shot.nt}, "
          f"dt = {1e3 * shot.dt:.3f} ms; all on 1 thread (ours, numpy, Devito)")  # fmt: skip
    print(f"  forward modelling            {1e3 * t_fwd:9.2f} ms   peak {mb * p_fwd:7.1f} MB")
    print(f"  gradient, store-all, fresh   {1e3 * t_all:9.2f} ms   x{t_all / t_fwd:5.2f} "
          f"(min x{mins['store_all']:.2f})   peak {mb * p_all:7.1f} MB (a new store each call: "
          "its page faults)")  # fmt: skip
    print(f"  gradient, store-all, kept    {1e3 * t_ws:9.2f} ms   x{t_ws / t_fwd:5.2f} "
          f"(min x{mins['workspace']:.2f})   the default: the store is kept between calls "
          "(target x3)")  # fmt: skip
    print(f"  gradient, budget 1/10        {1e3 * t_bud:9.2f} ms   x{t_bud / t_fwd:5.2f} "
          f"(min x{mins['budget']:.2f})   "
          f"peak {mb * p_bud:7.1f} MB <= budget {mb * budget:.1f} MB: {p_bud <= budget} "
          f"({res_bud.stats['schedule']}, recompute x{res_bud.stats['recompute_factor']:.2f}, "
          f"identical gradient: {same}) (target x5)")  # fmt: skip
    print(f"  vectorised numpy forward     {1e3 * t_np:9.2f} ms   ours is x{np_ratio:.1f} "
          f"faster (target x10); same data to {np_diff:.0e}")  # fmt: skip
    if dev:
        print(f"  Devito forward               {1e3 * dev['forward_s']:9.2f} ms   "
              f"Devito / ours = {dev['forward_vs_ours']:.2f}")  # fmt: skip
        print(f"  Devito gradient (store-all)  {1e3 * dev['gradient_s']:9.2f} ms   "
              f"x{dev['gradient_s'] / dev['forward_s']:.2f} of its forward; Devito / ours "
              f"(store-all) = {dev['gradient_vs_ours']:.2f}; data differ from ours by "
              f"{dev['data_rel_diff_vs_ours']:.1e}")  # fmt: skip
    else:
        print("  Devito: not installed (pip install devito) or skipped")
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
