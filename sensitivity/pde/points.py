"""Point sources and receivers on a 2-D grid: bilinear sampling and its exact adjoint.

A point ``(x, z)`` between grid nodes is represented by the four surrounding
nodes with bilinear weights ``w_k`` (summing to 1). Sampling a field is
``d = sum_k w_k u[i_k, j_k]`` (operator ``R``); injection is its transpose
``u[i_k, j_k] += w_k d`` (``R^T``). A point *source* of a PDE is a discrete
delta, ``R^T / (hx hz)``, so that its integral over the cell is the source
strength whatever the grid spacing.

Fields handled by the kernels here carry a halo of :data:`HALO` zero cells on
every side (the 4th-order stencil reads two neighbours), so node ``(i, j)`` is
``u[i + HALO, j + HALO]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

HALO = 2  # cells of zeros around each field: the 4th-order stencil's half width


@dataclass(frozen=True)
class PointSet:
    """Bilinear interpolation data for ``n`` points.

    Attributes
    ----------
    positions : ndarray, shape (n, 2)
        ``(x, z)`` in metres, relative to the grid origin (node ``(0, 0)``).
    idx : ndarray of int64, shape (n, 4, 2)
        Grid nodes ``(i, j)`` of the four corners (without the halo offset).
    weights : ndarray, shape (n, 4)
        Bilinear weights, summing to 1 per point.
    """

    positions: np.ndarray
    idx: np.ndarray
    weights: np.ndarray

    @property
    def n(self):
        return self.positions.shape[0]


def point_set(positions, shape, spacing):
    """Bilinear interpolation data for points on a grid of ``shape`` nodes.

    Parameters
    ----------
    positions : array_like, shape (n, 2)
        ``(x, z)`` in metres from node ``(0, 0)``.
    shape : tuple of int
        ``(nx, nz)`` nodes.
    spacing : tuple of float
        ``(hx, hz)`` in metres.

    Returns
    -------
    PointSet

    Raises
    ------
    ValueError
        If a point lies outside the grid or the array has the wrong shape.
    """
    pos = np.atleast_2d(np.asarray(positions, dtype=float))
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(f"positions must have shape (n, 2), got {np.shape(positions)}")
    ext = np.array([(shape[0] - 1) * spacing[0], (shape[1] - 1) * spacing[1]])
    bad = np.flatnonzero(~np.all((pos >= 0) & (pos <= ext), axis=1))
    if bad.size:
        raise ValueError(
            f"positions[{bad[0]}] = {pos[bad[0]]} lies outside the grid "
            f"[0, {ext[0]}] x [0, {ext[1]}]"
        )
    f = pos / np.asarray(spacing, dtype=float)
    i0 = np.minimum(np.floor(f).astype(np.int64), np.array(shape) - 2)
    r = f - i0  # local coordinates in [0, 1]
    idx = np.empty((pos.shape[0], 4, 2), dtype=np.int64)
    w = np.empty((pos.shape[0], 4))
    for k, (di, dj) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        idx[:, k, 0] = i0[:, 0] + di
        idx[:, k, 1] = i0[:, 1] + dj
        w[:, k] = (r[:, 0] if di else 1 - r[:, 0]) * (r[:, 1] if dj else 1 - r[:, 1])
    return PointSet(pos, idx, w)


@njit(cache=True)
def sample(u, idx, w, out):
    """``out[p] = sum_k w[p, k] u[idx[p, k] + HALO]`` (the operator R)."""
    for p in range(idx.shape[0]):
        s = 0.0
        for k in range(4):
            s += w[p, k] * u[idx[p, k, 0] + 2, idx[p, k, 1] + 2]
        out[p] = s


@njit(cache=True)
def inject(u, idx, w, values, scale, o):
    """``u[idx[p, k] + o] += scale[idx[p, k]] w[p, k] values[p]`` (``R^T``, scaled).

    ``o`` is the halo of ``u``: :data:`HALO` for padded fields, 0 otherwise.
    """
    for p in range(idx.shape[0]):
        for k in range(4):
            i = idx[p, k, 0]
            j = idx[p, k, 1]
            u[i + o, j + o] += scale[i, j] * w[p, k] * values[p]


def sample_field(u, points):
    """Sample an unpadded field ``u`` (nx, nz) at ``points``: ``R u``, shape (n,)."""
    out = np.empty(points.n)
    sample(np.pad(np.asarray(u, dtype=float), HALO), points.idx, points.weights, out)
    return out


def inject_values(values, points, shape):
    """Inject point values into a zero field of ``shape``: ``R^T values``."""
    u = np.zeros((shape[0] + 2 * HALO, shape[1] + 2 * HALO))
    inject(u, points.idx, points.weights, np.asarray(values, dtype=float), np.ones(shape), HALO)
    return u[HALO:-HALO, HALO:-HALO]
