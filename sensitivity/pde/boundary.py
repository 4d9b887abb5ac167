"""Boundary conditions for the finite-difference/finite-volume operators, and sponges.

Cell-centred 1-D finite volumes (:mod:`sensitivity.pde.operators`) take a
:class:`BC` at each end:

* ``Dirichlet(value)``: ``u = value`` on the boundary face, half a cell from
  the first cell centre (ghost value ``2 value - u_0``);
* ``Neumann(value)``: ``du/dn = value`` (outward normal derivative);
* ``Flux(value)``: a prescribed flux ``q`` *into* the domain through the face
  (a Neumann condition on ``k du/dn`` that does not depend on ``k``).

The absorbing sponge for wave equations is a damping rate ``sigma`` (1/s) that
grows quadratically across a layer of ``width`` cells around the physical
domain:

    sigma(d) = sigma_max (d / W)^2,   sigma_max = 3 v_max ln(1/R) / (2 W),

with ``d`` the distance into the layer, ``W`` its thickness and ``R`` the
target reflection coefficient at normal incidence (Cerjan et al. 1985;
Collino & Tsogka 2001 for the profile).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BC_KINDS = ("dirichlet", "neumann", "flux")


@dataclass(frozen=True)
class BC:
    """A boundary condition of ``kind`` in :data:`BC_KINDS` with a constant ``value``."""

    kind: str
    value: float = 0.0

    def __post_init__(self):
        if self.kind not in BC_KINDS:
            raise ValueError(f"BC kind must be one of {BC_KINDS}, got {self.kind!r}")
        if not np.isfinite(self.value):
            raise ValueError(f"BC value must be finite, got {self.value!r}")

    @property
    def code(self):
        """Integer code used by the compiled kernels."""
        return BC_KINDS.index(self.kind)


def Dirichlet(value=0.0):  # noqa: N802 (reads as a type in user code)
    """``u = value`` on the boundary."""
    return BC("dirichlet", float(value))


def Neumann(value=0.0):  # noqa: N802
    """``du/dn = value`` (outward normal) on the boundary."""
    return BC("neumann", float(value))


def Flux(value=0.0):  # noqa: N802
    """Flux ``value`` into the domain through the boundary."""
    return BC("flux", float(value))


def sponge(shape, width, spacing, v_max, reflection=1e-3):
    """Damping rate (1/s) of an absorbing layer ``width`` cells thick on every side.

    Parameters
    ----------
    shape : tuple of int
        Computational nodes ``(nx, nz)``, the layer included.
    width : int
        Layer thickness in cells.
    spacing : tuple of float
        ``(hx, hz)`` in metres.
    v_max : float
        Largest velocity (m/s).
    reflection : float
        Target normal-incidence reflection coefficient ``R``.

    Returns
    -------
    ndarray, shape (nx, nz)
        Zero in the physical domain.
    """
    if width < 1:
        return np.zeros(shape)
    out = np.zeros(shape)
    for axis, (n, h) in enumerate(zip(shape, spacing)):
        W = width * h
        smax = 3.0 * v_max * np.log(1.0 / reflection) / (2.0 * W)
        i = np.arange(n)
        d = np.maximum(np.maximum(width - i, i - (n - 1 - width)), 0) * h
        prof = smax * (d / W) ** 2
        out += prof[:, None] if axis == 0 else prof[None, :]
    return out
