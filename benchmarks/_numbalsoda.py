"""Shared pieces of the numbalsoda rows (ode_solve.py, forward_sens.py).

numbalsoda's LSODA takes one scalar atol; Robertson's atol is per component. Its rows
integrate the scaled state z = y / w (w = atol / atol[0]), so that atol[0] on z is exactly
the per-component atol on y (the same error weights; rtol is scale-free).
"""

from __future__ import annotations

import numba


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
