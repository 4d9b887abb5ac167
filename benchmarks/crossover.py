"""Forward sensitivities vs the adjoint: where the crossover lies (theory page of issue 9).

A damped oscillator driven by m Gaussian pulses of unknown amplitude,

    x' = v,    v' = -x - 0.1 v + sum_j p_j exp(-((t - c_j) / w)^2),

observed at 41 times, L2 misfit. The state has n = 2 components whatever m is, so the
forward-sensitivity gradient costs about one augmented solve per chunk of 8 directions
(m + n directions in all: parameters and initial values), while the discrete adjoint costs
a constant (one recorded forward solve and one reverse sweep). For m = 1 ... 128 this prints
both gradient times as multiples of one plain solve, and the ratio forward/adjoint; the
crossover is the m where that ratio passes 1. ``sensitivity.gradient(method="auto")``
switches at m + n > 8; this benchmark is what that rule rests on. Both gradients are checked
against each other at every m (a fast wrong answer does not count).

Run: ``python benchmarks/crossover.py [--quick]``
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import sensitivity as sn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import median  # noqa: E402

WIDTH = 0.6  # pulse width (time units)
T_END = 20.0


def driven(t, y, p, dydt):
    force = 0.0
    m = len(p)
    for j in range(m):
        # pulse centres spread evenly over [0, T_END]
        c = T_END * (j + 0.5) / m
        z = (t - c) / WIDTH
        force += p[j] * np.exp(-z * z)
    dydt[0] = y[1]
    dydt[1] = -y[0] - 0.1 * y[1] + force


def median_time(fn, repeat):
    return median(fn, repeat, warmup=2)


def case(m, repeat):
    """Solve, forward-gradient and adjoint-gradient times (s) and their disagreement."""
    rng = np.random.default_rng(m)
    p = 1.0 + 0.3 * rng.standard_normal(m)
    prob = sn.ODEProblem(driven, [0.0, 0.0], (0.0, T_END), p)
    ts = np.linspace(0.5, T_END, 41)
    data = sn.solve(prob, method="Tsit5", t_eval=ts, rtol=1e-10, atol=1e-12).y
    prob_start = sn.ODEProblem(driven, [0.1, 0.0], (0.0, T_END), 0.8 * p)
    obj = sn.L2Misfit(ts, data)
    solver = sn.Solver(prob_start, "Tsit5", ts, 1e-6, 1e-8)

    def fwd():
        return sn.gradient(prob_start, obj, method="forward", ode_method="Tsit5")

    def adj():
        return sn.gradient(prob_start, obj, method="adjoint", ode_method="Tsit5")

    gf, ga = fwd(), adj()
    scale = np.abs(gf.grad_p).max()
    diff = np.abs(gf.grad_p - ga.grad_p).max() / scale
    return median_time(solver, repeat), median_time(fwd, repeat), median_time(adj, repeat), diff


def main():
    quick = "--quick" in sys.argv
    sizes = [1, 4, 16] if quick else [1, 2, 4, 8, 16, 32, 64, 128]
    repeat = 5 if quick else 15
    print("Driven oscillator, n = 2 states, m pulse amplitudes, Tsit5 rtol 1e-6 atol 1e-8")
    print(f"{'m':>5s} {'solve ms':>9s} {'fwd/solve':>10s} {'adj/solve':>10s} "
          f"{'fwd/adj':>8s} {'rel. diff':>10s}")  # fmt: skip
    rows = []
    for m in sizes:
        ts, tf, ta, diff = case(m, repeat)
        rows.append(dict(m=m, solve=ts, forward=tf, adjoint=ta))
        print(f"{m:5d} {ts * 1e3:9.3f} {tf / ts:10.1f} {ta / ts:10.1f} {tf / ta:8.2f} {diff:10.1e}")
    ratio = [r["forward"] / r["adjoint"] for r in rows]
    first = next((r["m"] for r, q in zip(rows, ratio) if q > 1.5), None)
    print(f"forward/adjoint time: {min(ratio):.2f} ... {max(ratio):.2f}; " + (
        f"the adjoint is 1.5x faster or more from m = {first}" if first is not None else
        "no crossover: both grow alike with m (f_p is dense here)"))  # fmt: skip
    print("json:", json.dumps({"crossover": rows}))


if __name__ == "__main__":
    main()
