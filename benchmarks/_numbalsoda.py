"""numbalsoda's rows of the benchmarks (ode_solve.py, forward_sens.py), each timed in a
fresh process.

In one process numbalsoda's timings depend on what it solved before: its second problem
measured 2-5x slower than alone, in either order (Robertson's LSODA 0.155 against 0.08 ms
after the Lotka-Volterra rows; DOP853 on Lotka-Volterra 0.096 against 0.020 ms after
Robertson). Ours do not. :func:`isolated` runs one case per process, so each peer figure
is numbalsoda at its best.

numbalsoda's LSODA takes one scalar atol; Robertson's atol is per component. Its rows
integrate the scaled state z = x / w (w = atol / atol[0]), so that atol[0] on z is exactly
the per-component atol on x (the same error weights; rtol is scale-free).

Run: ``python benchmarks/_numbalsoda.py CASE REPEAT`` prints ``[median, minimum seconds,
solution]`` as JSON; the cases are the keys of :data:`CASES`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numba
import numpy as np
from _timing import median_time

HERE = os.path.dirname(os.path.abspath(__file__))

LV_P = (1.5, 1.0, 3.0, 1.0)
ROBER_P = (0.04, 1e4, 3e7)
ROBER_ATOL = np.array([1e-8, 1e-14, 1e-6])
LV_T = np.linspace(0.0, 10.0, 101)


def isolated(case, repeat):  # pragma: no cover - optional peer
    """Run ``case`` in a new process; return (median, minimum seconds, solution array)."""
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "_numbalsoda.py"), case, str(repeat)],
        capture_output=True,
        text=True,
        check=True,
    )
    t, t_min, sol = json.loads(out.stdout.strip().splitlines()[-1])
    return t, t_min, np.array(sol)


@numba.njit(inline="always")
def rober_scaled(z, dz, w0, w1, w2, k1, k2, k3):
    """Robertson's right-hand side on z = y / w into ``dz[:3]``; returns y."""
    y0, y1, y2 = w0 * z[0], w1 * z[1], w2 * z[2]
    r = -k1 * y0 + k2 * y1 * y2
    q = k3 * y1 * y1
    dz[0] = r / w0
    dz[1] = (-r - q) / w1
    dz[2] = q / w2
    return y0, y1, y2


def _lv(method):  # pragma: no cover - optional peer
    import numbalsoda

    a, b, c, d = LV_P

    @numba.cfunc(numbalsoda.lsoda_sig)
    def rhs(t, u, du, data):
        du[0] = a * u[0] - b * u[0] * u[1]
        du[1] = -c * u[1] + d * u[0] * u[1]

    f, u0 = getattr(numbalsoda, method), np.array([1.0, 1.0])
    return lambda: f(rhs.address, u0, LV_T, rtol=1e-6, atol=1e-8)[0]


def _rober(t_eval):  # pragma: no cover - optional peer
    import numbalsoda

    k1, k2, k3 = ROBER_P
    w0, w1, w2 = ROBER_ATOL / ROBER_ATOL[0]

    @numba.cfunc(numbalsoda.lsoda_sig)
    def rhs(t, z, dz, data):
        rober_scaled(z, dz, w0, w1, w2, k1, k2, k3)

    w = np.array([w0, w1, w2])
    z0 = np.array([1.0, 0.0, 0.0]) / w
    te = np.concatenate([[0.0], t_eval])  # numbalsoda's first output time is the start

    def run():
        z, ok = numbalsoda.lsoda(rhs.address, z0, te, rtol=1e-4, atol=1e-8, mxstep=100_000)
        assert ok
        return z[1:] * w

    return run


def _lv_sens():  # pragma: no cover - optional peer
    """DOP853 on the hand-augmented Lotka-Volterra system [y (2), S (2, 4)]."""
    import numbalsoda

    a, b, c, d = LV_P

    @numba.cfunc(numbalsoda.lsoda_sig)
    def rhs(t, z, dz, data):
        y0, y1 = z[0], z[1]
        dz[0] = a * y0 - b * y0 * y1
        dz[1] = -c * y1 + d * y0 * y1
        j00, j01, j10, j11 = a - b * y1, -b * y0, d * y1, -c + d * y0
        fp = ((y0, -y0 * y1, 0.0, 0.0), (0.0, 0.0, -y1, y0 * y1))
        for k in range(4):
            s0, s1 = z[2 + k], z[6 + k]
            dz[2 + k] = j00 * s0 + j01 * s1 + fp[0][k]
            dz[6 + k] = j10 * s0 + j11 * s1 + fp[1][k]

    z0 = np.concatenate([[1.0, 1.0], np.zeros(8)])
    return lambda: numbalsoda.dop853(rhs.address, z0, LV_T, rtol=1e-6, atol=1e-8)[0][:, 2:]


def _rober_sens(t_eval):  # pragma: no cover - optional peer
    """LSODA on the hand-augmented Robertson system [y (3), S (3, 3)], scaled as the module
    docstring says, with forward_sens.augmented's tolerances (S columns as y)."""
    import numbalsoda

    k1, k2, k3 = ROBER_P
    w = np.concatenate([ROBER_ATOL, np.tile(ROBER_ATOL, 3)]) / ROBER_ATOL[0]
    w0, w1, w2 = w[0], w[1], w[2]

    @numba.cfunc(numbalsoda.lsoda_sig)
    def rhs(t, z, dz, data):
        y0, y1, y2 = rober_scaled(z, dz, w0, w1, w2, k1, k2, k3)
        J = (
            (-k1, k2 * y2, k2 * y1),
            (k1, -k2 * y2 - 2 * k3 * y1, -k2 * y1),
            (0.0, 2 * k3 * y1, 0.0),
        )
        fp = ((-y0, y1 * y2, 0.0), (y0, -y1 * y2, -y1 * y1), (0.0, 0.0, y1 * y1))
        for i in range(3):
            for j in range(3):
                acc = fp[i][j]
                for m in range(3):
                    acc += J[i][m] * (z[3 + 3 * m + j] * w[3 + 3 * m + j])
                dz[3 + 3 * i + j] = acc / w[3 + 3 * i + j]

    z0 = np.concatenate([[1.0, 0.0, 0.0], np.zeros(9)]) / w
    te = np.concatenate([[0.0], t_eval])

    def run():
        z, ok = numbalsoda.lsoda(rhs.address, z0, te, rtol=1e-4, atol=1e-8, mxstep=100_000)
        assert ok
        return (z[1:] * w)[:, 3:]

    return run


ROBER_T = 0.4 * 10.0 ** np.arange(0, 12)  # ode_solve.py's outputs
ROBER_SENS_T = 0.4 * 10.0 ** np.arange(0, 11)  # forward_sens.py's outputs
CASES = {
    "lv_dop853": lambda: _lv("dop853"),
    "lv_lsoda": lambda: _lv("lsoda"),
    "rober_lsoda": lambda: _rober(ROBER_T),
    "lv_sens_dop853": _lv_sens,
    "rober_sens_lsoda": lambda: _rober_sens(ROBER_SENS_T),
}

if __name__ == "__main__":  # pragma: no cover
    run = CASES[sys.argv[1]]()
    t, t_min = median_time(run, int(sys.argv[2]))
    print(json.dumps([t, t_min, run().tolist()]))
