"""Analytic drawdown of a well pumping at a constant rate: Theis and Hantush.

Confined aquifer (Theis 1935):

    s(r, t) = Q / (4 pi T) W(u),   u = r^2 S / (4 T t),   W(u) = E1(u)

Leaky aquifer under an aquitard of hydraulic resistance c (Hantush & Jacob 1955):

    s(r, t) = Q / (4 pi T) W(u, r/B),   B = sqrt(T c),
    W(u, beta) = integral_u^inf exp(-y - beta^2 / (4 y)) / y dy

Units: r in m, t in days, T in m^2/d, S dimensionless, c in days, Q in m^3/d.
These are the independent checks of the example's PDE solution and fits.
"""

from __future__ import annotations

import numpy as np
from scipy import integrate, special


def theis(r, t, T, S, Q):
    """Theis drawdown (m) at distance r (m) and time t (d); arrays broadcast."""
    u = np.asarray(r, dtype=float) ** 2 * S / (4.0 * T * np.asarray(t, dtype=float))
    return Q / (4.0 * np.pi * T) * special.exp1(u)


def hantush_well_function(u, beta):
    """W(u, beta) by adaptive quadrature in log y (smooth, no endpoint singularity)."""

    def integrand(z):
        y = np.exp(z)
        return np.exp(-y - beta * beta / (4.0 * y))

    upper = max(np.log(u) + 1.0, np.log(50.0))  # exp(-y) below 2e-22 beyond y = 50
    val, _ = integrate.quad(integrand, np.log(u), upper, epsabs=1e-13, epsrel=1e-11, limit=200)
    return val


def hantush(r, t, T, S, c, Q):
    """Hantush-Jacob leaky drawdown (m); r, t arrays of equal shape (or scalars)."""
    r, t = np.broadcast_arrays(np.asarray(r, dtype=float), np.asarray(t, dtype=float))
    B = np.sqrt(T * c)
    u = r**2 * S / (4.0 * T * t)
    W = np.array([hantush_well_function(ui, ri / B) for ui, ri in zip(u.ravel(), r.ravel())])
    return Q / (4.0 * np.pi * T) * W.reshape(r.shape)


def drawdown(r, t, p, Q):
    """Theis for ``p = [T, S]``, Hantush-Jacob for ``p = [T, S, c]``."""
    if len(p) == 3:
        return hantush(r, t, p[0], p[1], p[2], Q)
    return theis(r, t, p[0], p[1], Q)
