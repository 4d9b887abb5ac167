"""Grids: uniform 1-D and 2-D, and a log-spaced radial 1-D grid.

The 1-D grids are cell-centred finite-volume grids. Besides faces and centres
each carries the geometry the flux kernel of :mod:`sensitivity.pde.operators`
needs, so that one kernel serves Cartesian and cylindrical problems:

``volume`` (n,)
    cell size: ``dx`` (Cartesian, per unit area), ``(r_hi^2 - r_lo^2)/2``
    (radial, per radian and unit thickness);
``area`` (n + 1,)
    face size: 1 (Cartesian), ``r`` (radial, per radian);
``res_lo``, ``res_hi`` (n,)
    resistance to flow from a cell's centre to its lower/upper face per unit
    conductivity: the half-widths ``dx/2`` (Cartesian) and ``ln(r_c/r_lo)``,
    ``ln(r_hi/r_c)`` (radial, where steady flow between radii ``a < b`` is
    ``k (u_b - u_a) / ln(b/a)`` per radian, exact for ``u ~ ln r``).

The flow through an interior face between cells ``i-1`` and ``i`` is then
``(u_i - u_{i-1}) / (res_hi[i-1]/k[i-1] + res_lo[i]/k[i])``: the distance-weighted
harmonic mean of the two conductivities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check_span(a, b, n, name):
    if not (np.isfinite(a) and np.isfinite(b) and b > a):
        raise ValueError(f"{name}: need finite bounds with lower < upper, got ({a}, {b})")
    if int(n) != n or n < 1:
        raise ValueError(f"{name}: the number of cells must be a positive integer, got {n!r}")


@dataclass(frozen=True)
class Grid1D:
    """Uniform cell-centred grid of ``n`` cells on ``[a, b]``.

    Attributes
    ----------
    faces : ndarray, shape (n + 1,)
    centres : ndarray, shape (n,)
    h : float
        Cell width.
    volume, area, res_lo, res_hi : ndarray
        Finite-volume geometry (module docstring).
    """

    a: float
    b: float
    n: int

    def __post_init__(self):
        _check_span(self.a, self.b, self.n, "Grid1D")

    @property
    def faces(self):
        return np.linspace(self.a, self.b, self.n + 1)

    @property
    def centres(self):
        f = self.faces
        return 0.5 * (f[1:] + f[:-1])

    @property
    def h(self):
        return (self.b - self.a) / self.n

    @property
    def volume(self):
        return np.full(self.n, self.h)

    @property
    def area(self):
        return np.ones(self.n + 1)

    @property
    def res_lo(self):
        return np.full(self.n, 0.5 * self.h)

    @property
    def res_hi(self):
        return np.full(self.n, 0.5 * self.h)


@dataclass(frozen=True)
class RadialGrid1D:
    """Log-spaced cylindrical grid of ``n`` cells between ``r_inner`` and ``r_outer``.

    Faces are ``geomspace(r_inner, r_outer, n + 1)`` (fine near a well, coarse
    far away); centres are the geometric means of their faces. Geometry per
    radian and unit thickness (module docstring).
    """

    r_inner: float
    r_outer: float
    n: int

    def __post_init__(self):
        _check_span(self.r_inner, self.r_outer, self.n, "RadialGrid1D")
        if self.r_inner <= 0:
            raise ValueError(f"RadialGrid1D: r_inner must be > 0, got {self.r_inner}")

    @property
    def faces(self):
        return np.geomspace(self.r_inner, self.r_outer, self.n + 1)

    @property
    def centres(self):
        f = self.faces
        return np.sqrt(f[1:] * f[:-1])

    @property
    def volume(self):
        f = self.faces
        return 0.5 * (f[1:] ** 2 - f[:-1] ** 2)

    @property
    def area(self):
        return self.faces

    @property
    def res_lo(self):
        return np.log(self.centres / self.faces[:-1])

    @property
    def res_hi(self):
        return np.log(self.faces[1:] / self.centres)


@dataclass(frozen=True)
class Grid2D:
    """Uniform 2-D node grid: ``shape = (nx, nz)`` nodes spaced ``spacing = (hx, hz)``.

    Node ``(i, j)`` is at ``origin + (i hx, j hz)``. Used by the wave solver
    (with the sponge counted in ``shape``) and by :func:`laplacian`.
    """

    shape: tuple
    spacing: tuple
    origin: tuple = (0.0, 0.0)

    def __post_init__(self):
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ValueError(f"Grid2D: shape must be two positive ints, got {self.shape}")
        if len(self.spacing) != 2 or min(self.spacing) <= 0:
            raise ValueError(f"Grid2D: spacing must be two positive numbers, got {self.spacing}")

    @property
    def x(self):
        return self.origin[0] + self.spacing[0] * np.arange(self.shape[0])

    @property
    def z(self):
        return self.origin[1] + self.spacing[1] * np.arange(self.shape[1])

    @property
    def extent(self):
        return ((self.shape[0] - 1) * self.spacing[0], (self.shape[1] - 1) * self.spacing[1])
