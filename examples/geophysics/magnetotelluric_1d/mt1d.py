"""1-D magnetotellurics: the impedance Riccati ODE, its data and Wait's recursion.

Physics (SI units, time dependence e^{+i omega t}, depth z positive down). In a
1-D earth of conductivity sigma(z) the impedance Z(z) = E_x / H_y obeys

    dZ/dz = sigma(z) Z^2 - i omega mu0                                    (1)

(the issue's ``dZ/dz = i omega mu0 - sigma Z^2`` with z pointing up), which is
stable when integrated upwards, from a half-space at depth (where Z is its
intrinsic impedance sqrt(i omega mu0 / sigma)) to the surface. The apparent
resistivity and phase are ``rho_a = |Z|^2 / (omega mu0)`` and ``phi = arg Z``
(45 degrees and rho_a = rho over a uniform half-space).

Rescaling. Z spans many decades over the periods and the depth 400 km, so the
ODE is solved for

    w = Z / Z_b,   Z_b = sqrt(i omega mu0 rho_b)                          (2)

(the impedance in units of that of the basement half-space, resistivity rho_b:
w = 1 at its top whatever the model, so the initial value does not depend on
the parameters) against a *layer coordinate* u: u in [0, 1) is the top layer
(z = z1 u), and u in [k, k + 1) is layer k, log-spaced, z = z1 r^(u - 1). Each
layer is then a unit interval of u and the layer index is floor(u). With
depth measured in the period's skin scale L = 1 / sqrt(omega mu0), (1) becomes

    dw/du = (dz/du / L) e^{i pi/4} rho_b^{-1/2} ((rho_b / rho_k) w^2 - 1),   (3)

and at the surface rho_a = rho_b |w|^2, phi = 45 deg + arg w. The real
integrators take w = (Re w, Im w).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import sensitivity as sn

MU0 = 4e-7 * np.pi  # vacuum permeability (H/m); the data file's conversion uses it
LN10 = np.log(10.0)
HALF_SQRT2 = 0.5 * np.sqrt(2.0)
DATA = Path(__file__).resolve().parent / "mt_nmx20.csv"
Y0 = np.array([1.0, 0.0])  # w = Z / Z_b = 1 at the top of the basement


# ---- the model: layers and the right-hand side -----------------------------------------


@dataclass(frozen=True)
class Layers:
    """A layered earth: a top layer [0, z1), log-spaced layers down to z_bottom, a basement.

    Attributes
    ----------
    n : int
        Number of layers including the basement half-space (>= 3).
    z1, z_bottom : float
        Depth of the first interface and top of the basement (m).
    """

    n: int = 60
    z1: float = 200.0
    z_bottom: float = 400e3

    def __post_init__(self):
        if not (isinstance(self.n, (int, np.integer)) and self.n >= 3):
            raise ValueError(f"n must be an integer >= 3, got {self.n!r}")
        if not 0 < self.z1 < self.z_bottom:
            raise ValueError(f"need 0 < z1 < z_bottom, got z1={self.z1}, z_bottom={self.z_bottom}")

    @property
    def log_ratio(self):
        """ln r, the log of the thickness ratio of successive layers."""
        return np.log(self.z_bottom / self.z1) / (self.n - 2)

    @property
    def interfaces(self):
        """Depths of the n - 1 interfaces (m), z1 ... z_bottom."""
        return self.z1 * np.exp(self.log_ratio * np.arange(self.n - 1))

    @property
    def thickness(self):
        """Thicknesses of the n - 1 finite layers (m)."""
        return np.diff(np.concatenate([[0.0], self.interfaces]))

    @property
    def centres(self):
        """A representative depth per layer (m): mid-layer, the basement at its top."""
        z = np.concatenate([[0.0], self.interfaces])
        return np.concatenate([0.5 * (z[:-1] + z[1:]), [self.z_bottom]])

    def params(self, m, period):
        """ODE parameters p = [m (n), z1 / L, ln r] for log10-resistivities m at a period."""
        scale = 1.0 / np.sqrt(2.0 * np.pi / period * MU0)  # L (m)
        return np.concatenate([m, [self.z1 / scale, self.log_ratio]])


def riccati_rhs(v, y, p, dydt):
    """Equation (3) of the module doc in the smoothed layer coordinate, real and imaginary parts.

    The independent variable v runs through layer k = floor(v) with u = k + g(v - k),
    g(x) = 35 x^4 - 84 x^5 + 70 x^6 - 20 x^7 (g' = 140 x^3 (1 - x)^3): the solution
    w(u(v)) is the same curve, but dw/dv vanishes to third order at every interface,
    so the right-hand side is C^2 across the jumps of sigma and the adaptive RK steps
    need not stop at them (see the README for the step counts this saves).
    y = (Re w, Im w); p = [log10 rho_0 ... log10 rho_{n-1}, z1 / L, ln r].
    """
    n = p.shape[0] - 2
    k = min(int(v), n - 1)  # layer index: each layer is a unit interval of v
    x = v - k if k < n - 1 else 0.0  # at the top of the basement w = 1 is at rest anyway
    speed = 140.0 * (x * (1.0 - x)) ** 3  # du/dv
    if k == 0:
        dzdu = p[n]  # top layer: z / L = (z1 / L) u
    else:
        u = k + x**4 * (35.0 + x * (-84.0 + x * (70.0 - 20.0 * x)))
        dzdu = p[n] * p[n + 1] * np.exp((u - 1.0) * p[n + 1])  # z / L = (z1 / L) r^(u - 1)
    mb = p[n - 1]
    q = np.exp(LN10 * (mb - p[k]))  # rho_b / rho_k
    s = speed * dzdu * HALF_SQRT2 * np.exp(-0.5 * LN10 * mb)  # |e^{i pi/4}| / sqrt(rho_b)
    a = q * (y[0] * y[0] - y[1] * y[1]) - 1.0
    b = 2.0 * q * y[0] * y[1]
    dydt[0] = s * (a - b)  # (1 + i)(a + i b) = (a - b) + i (a + b)
    dydt[1] = s * (a + b)


def sounding_observe(u, y, p, out):
    """Observed at the surface: out = (log10 rho_a, phase in degrees)."""
    n = p.shape[0] - 2
    out[0] = p[n - 1] + np.log10(y[0] * y[0] + y[1] * y[1])
    out[1] = 45.0 + np.arctan2(y[1], y[0]) * (180.0 / np.pi)


# ---- Wait's recursion (the exact layered-earth impedance) ---------------------------------


def wait_impedance(periods, rho, thickness):
    """Surface impedance (ohm) of a layered earth by Wait's recursion.

    Parameters
    ----------
    periods : ndarray, shape (nT,)
    rho : ndarray, shape (n,)
        Resistivities (ohm m), the last one the basement half-space.
    thickness : ndarray, shape (n - 1,)

    Returns
    -------
    ndarray, complex, shape (nT,)
    """
    omega = 2.0 * np.pi / np.asarray(periods, dtype=float)
    iwm = 1j * omega * MU0
    Z = np.sqrt(iwm * rho[-1])
    for rho_j, h in zip(rho[-2::-1], thickness[::-1]):
        zeta = np.sqrt(iwm * rho_j)  # intrinsic impedance of the layer
        t = np.tanh(np.sqrt(iwm / rho_j) * h)
        Z = zeta * (Z + zeta * t) / (zeta + Z * t)
    return Z


def apparent(Z, periods):
    """(rho_a (ohm m), phase (degrees)) of impedances Z (ohm)."""
    omega = 2.0 * np.pi / np.asarray(periods, dtype=float)
    return np.abs(Z) ** 2 / (omega * MU0), np.degrees(np.angle(Z))


# ---- the data --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sounding:
    """Determinant-average sounding curves with their standard deviations.

    Attributes
    ----------
    periods : ndarray, shape (nT,)
    Z : ndarray, complex, shape (nT,)
        Determinant impedance sqrt(Zxx Zyy - Zxy Zyx) (ohm).
    rel_error : ndarray, shape (nT,)
        Standard deviation of |Z| relative to |Z| from the data's variances (before the floor).
    data : ndarray, shape (nT, 2)
        log10 rho_a and phase (degrees).
    sd : ndarray, shape (nT, 2)
        Their standard deviations, with the error floor.
    floor : float
        Relative error floor on |Z|.
    """

    periods: np.ndarray
    Z: np.ndarray
    rel_error: np.ndarray
    data: np.ndarray
    sd: np.ndarray
    floor: float


def _read_csv(path):
    """Columns of the station file by name (its header lines start with '#')."""
    with open(path) as fh:
        lines = [line for line in fh if line.strip() and not line.startswith("#")]
    names = lines[0].strip().split(",")
    values = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(f"{path}: expected {len(names)} columns per row")
    return dict(zip(names, values.T))


def read_sounding(path=DATA, floor=0.05):
    """Read the station file and form the rotation-invariant (determinant) sounding.

    Errors: with independent, circular complex errors of variance v_ij
    (= E|dZ_ij|^2, the file's var_*) on each element, D = Zxx Zyy - Zxy Zyx has
    var D = |Zyy|^2 v_xx + |Zxx|^2 v_yy + |Zyx|^2 v_xy + |Zxy|^2 v_yx and
    Z_det = sqrt(D) has var Z_det = var D / (4 |D|). A circular error of variance
    v moves |Z| and |Z| arg Z each by sqrt(v / 2), so the relative error
    e = sqrt(v / 2) / |Z| gives sd(log10 rho_a) = 2 e / ln 10 and sd(phase) = e
    radians. The floor bounds e from below (0.05: 10 % in rho_a, 2.9 degrees).
    """
    if not 0.0 <= floor < 1.0:
        raise ValueError(f"floor must lie in [0, 1), got {floor!r}")
    raw = _read_csv(path)
    unit = 1e3 * MU0  # (mV/km)/nT -> ohm (the file's header)
    el = {k: unit * (raw[f"{k}_re"] + 1j * raw[f"{k}_im"]) for k in ("Zxx", "Zxy", "Zyx", "Zyy")}
    var = {k: unit**2 * raw[f"var_{k}"] for k in el}
    D = el["Zxx"] * el["Zyy"] - el["Zxy"] * el["Zyx"]
    var_D = (
        np.abs(el["Zyy"]) ** 2 * var["Zxx"]
        + np.abs(el["Zxx"]) ** 2 * var["Zyy"]
        + np.abs(el["Zyx"]) ** 2 * var["Zxy"]
        + np.abs(el["Zxy"]) ** 2 * var["Zyx"]
    )
    Z = np.sqrt(D)  # principal root: first quadrant for these data (e^{+i omega t})
    rel = np.sqrt(var_D / (4.0 * np.abs(D)) / 2.0) / np.abs(Z)
    e = np.maximum(rel, floor)
    periods = np.asarray(raw["period_s"], dtype=float)
    rho_a, phase = apparent(Z, periods)
    data = np.column_stack([np.log10(rho_a), phase])
    sd = np.column_stack([2.0 * e / LN10, np.degrees(e)])
    return Sounding(periods, Z, rel, data, sd, float(floor))


# ---- the ODE solves: impedances and the data objective -----------------------------------


def problem(layers, period, m, y0=Y0):
    """The ODE of one period, integrated from the basement (v = n - 1) to the surface (v = 0)."""
    return sn.ODEProblem(riccati_rhs, y0, (layers.n - 1.0, 0.0), layers.params(m, period))


def ode_impedance(layers, periods, m, method="Tsit5", rtol=1e-8, atol=1e-10, y0=Y0):
    """Surface impedances (ohm) from the ODE, one solve per period; shape (nT,), complex."""
    out = []
    for T in periods:
        sol = sn.solve(problem(layers, T, m, y0), method=method, t_eval=[0.0], rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"the ODE solve failed at period {T} s: {sol.message}")
        w = sol.y[-1, 0] + 1j * sol.y[-1, 1]
        out.append(w * np.sqrt(2j * np.pi / T * MU0 * 10.0 ** m[-1]))
    return np.array(out)


def data_objective(sounding, layers, m0, method="Tsit5", rtol=1e-6, atol=1e-8, gradient="adjoint"):
    """The chi^2 / 2 misfit of the sounding as a sum of one ODE experiment per period.

    Each period has its own ODEProblem (omega enters p through z1 / L) with an
    L2Misfit on (log10 rho_a, phase) at the surface, weighted by 1 / sd^2; theta
    holds the n log10-resistivities (the geometry entries of p stay fixed).

    Returns
    -------
    sensitivity.SumObjective
        ``fun(m)`` = chi^2 / 2, ``jac(m)`` by the adjoint, ``residuals(m)``
        (nT * 2,) = (prediction - data) / sd and ``residual_jac(m)`` by forward
        sensitivities.
    """
    parts = []
    for i, T in enumerate(sounding.periods):
        term = sn.L2Misfit([0.0], sounding.data[i : i + 1], observe=sounding_observe,
                           weights=sounding.sd[i : i + 1] ** -2.0)  # fmt: skip
        parts.append(sn.Objective(problem(layers, T, m0), term, params=np.arange(layers.n),
                                  method=method, rtol=rtol, atol=atol, gradient=gradient,
                                  name=f"T={T:.4g}s"))  # fmt: skip
    return sn.SumObjective(parts)


def predicted(objective, sounding, m):
    """Modelled (log10 rho_a, phase) at m, shape (nT, 2), from the objective's residuals."""
    return sounding.data + objective.residuals(m).reshape(-1, 2) * sounding.sd
