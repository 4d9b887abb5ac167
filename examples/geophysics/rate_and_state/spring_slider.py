"""Quasi-static spring-slider with Dieterich-Ruina rate-and-state friction.

The model of a laboratory velocity-step test: a block on a frictional
interface, pulled through a spring of stiffness k (friction per unit
displacement, 1/m) whose far end (the load point) moves at the imposed
velocity V_lp. Without inertia (quasi-static; no radiation damping),

    mu = mu0 + a ln(V / V0) + b ln(V0 theta / Dc)         (friction law)
    d mu / dt = k (V_lp - V)                               (elastic loading)
    d theta / dt = 1 - V theta / Dc                        (aging law), or
    d theta / dt = -(V theta / Dc) ln(V theta / Dc)        (slip law),

with V the slip rate, theta the state and V0 the reference velocity at which
mu0 is the steady-state friction. In the log variables x = ln(V / V0) and
psi = ln(V0 theta / Dc) (slip rates and states span decades; their logs are
O(1) and keep the solve well conditioned), mu = mu0 + a x + b psi and

    psi' = (V0 exp(-psi) - V) / Dc                          (aging)
    psi' = -V (x + psi) / Dc                                (slip)
    x'   = (k (V_lp - V) - b psi') / a,     V = V0 exp(x).

State y = (x, psi); ODE parameters p = (a, b, Dc, k, V_lp, V0). mu0 does not
enter the ODE, only the friction read from the state. Steady sliding at V0
is y = (0, 0) whatever the parameters, and at V_lp the steady state is
x = ln(V_lp / V0), psi = -x, so mu_ss = mu0 + (a - b) ln(V_lp / V0).

A load-point velocity history is a list of segments of constant V_lp. Each
segment is one solve that starts from the previous one's final state, and its
forward sensitivities (BDF, staggered corrector) are chained through that
state: with S = dy/dp accumulated over the earlier segments,

    dy/dp (t) = dy/dp|_segment (t) + dy/dy0|_segment (t) S(t_start).

References: Dieterich (1979), Ruina (1983), Marone (1998); see README.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

import sensitivity as sn
from sensitivity.inverse.objective import Evaluation

PARAMS = ("a", "b", "Dc", "k", "mu0")  # the fitted parameters theta, in this order
N_ODE = 4  # theta[:4] = (a, b, Dc, k) are p[:4] of the ODE; theta[4] = mu0 is not in it


@numba.njit(cache=True)
def aging_rhs(t, y, p, dydt):
    """Quasi-static spring-slider, aging law, in y = (ln V/V0, ln V0 theta/Dc)."""
    a, b, dc, k, v_lp, v0 = p[0], p[1], p[2], p[3], p[4], p[5]
    v = v0 * np.exp(y[0])
    dpsi = (v0 * np.exp(-y[1]) - v) / dc
    dydt[1] = dpsi
    dydt[0] = (k * (v_lp - v) - b * dpsi) / a


@numba.njit(cache=True)
def slip_rhs(t, y, p, dydt):
    """Quasi-static spring-slider, slip law, in y = (ln V/V0, ln V0 theta/Dc)."""
    a, b, dc, k, v_lp, v0 = p[0], p[1], p[2], p[3], p[4], p[5]
    v = v0 * np.exp(y[0])
    dpsi = -v * (y[0] + y[1]) / dc
    dydt[1] = dpsi
    dydt[0] = (k * (v_lp - v) - b * dpsi) / a


LAWS = {"aging": aging_rhs, "slip": slip_rhs}


def steady_state_friction(theta, v, v0):
    """mu_ss(V) = mu0 + (a - b) ln(V / V0), the friction of steady sliding at V."""
    a, b, _, _, mu0 = theta
    return mu0 + (a - b) * np.log(v / v0)


@dataclass
class Run:
    """One simulated load history.

    Attributes
    ----------
    t, displacement : ndarray, shape (nt,)
        Output times (s) and load-point displacements (m).
    y : ndarray, shape (nt, 2)
        (ln V/V0, ln V0 theta/Dc).
    mu : ndarray, shape (nt,)
        Friction.
    dmu : ndarray, shape (nt, 5) or None
        d mu / d theta for theta = (a, b, Dc, k, mu0).
    dy : ndarray, shape (nt, 2, 4) or None
        d y / d (a, b, Dc, k), chained across the segments.
    success : bool
    message : str
    """

    t: np.ndarray
    displacement: np.ndarray
    y: np.ndarray
    mu: np.ndarray
    dmu: np.ndarray | None
    dy: np.ndarray | None
    success: bool
    message: str


class VelocityStep:
    """A load-point velocity history, simulated with forward sensitivities.

    Parameters
    ----------
    velocities : sequence of float, length s
        Load-point velocity of each segment (m/s); the block starts in steady
        sliding at ``velocities[0]``, which is also the reference velocity V0.
    lengths : sequence of float, length s
        Load-point displacement of each segment (m).
    spacing : float
        Output every ``spacing`` of load-point displacement (m); every length
        must be a multiple of it.
    law : {"aging", "slip"}
    rtol, atol : float
        Tolerances of the BDF solves (atol on the log variables).
    theta : array_like, shape (5,)
        Parameters used to build the problems (any valid values; each call
        passes its own).
    """

    def __init__(self, velocities, lengths, spacing, law="aging", rtol=1e-8, atol=1e-10,
                 theta=(0.01, 0.015, 1e-5, 1e3, 0.6)):  # fmt: skip
        if law not in LAWS:
            raise ValueError(f"law must be one of {sorted(LAWS)}, got {law!r}")
        v, L = np.asarray(velocities, float), np.asarray(lengths, float)
        if v.ndim != 1 or v.shape != L.shape or v.size < 1:
            raise ValueError("velocities and lengths must be 1-D of the same length")
        if np.any(v <= 0) or np.any(L <= 0) or spacing <= 0:
            raise ValueError("velocities, lengths and spacing must be positive")
        steps = L / spacing
        if np.any(np.abs(steps - np.round(steps)) > 1e-9 * steps):
            raise ValueError(f"every length must be a multiple of spacing={spacing}, got {L}")
        self.velocities, self.lengths, self.law = v, L, law
        self.v0 = float(v[0])
        self.spacing, self.rtol, self.atol = float(spacing), rtol, atol
        # segment j: times t_j ... t_j+1; outputs at every `spacing` of displacement
        self.segments, t_start, d_start = [], 0.0, 0.0
        for j, (vj, Lj) in enumerate(zip(v, L)):
            k = np.arange(0 if j == 0 else 1, int(round(Lj / spacing)) + 1)
            d = d_start + k * spacing
            t = t_start + k * spacing / vj
            t[-1] = t_start + Lj / vj  # the segment end exactly (the next one starts there)
            p = self._p(np.asarray(theta, float), vj)
            prob = sn.ODEProblem(LAWS[law], np.zeros(2), (t_start, t[-1]), p)
            solver = sn.SensitivitySolver(prob, t, wrt="both", method="BDF", rtol=rtol,
                                          atol=atol)  # fmt: skip
            plain = sn.Solver(prob, "BDF", t, rtol, atol)
            self.segments.append((vj, t, d, solver, plain))
            t_start, d_start = t[-1], d[-1]
        self.t = np.concatenate([s[1] for s in self.segments])
        self.displacement = np.concatenate([s[2] for s in self.segments])

    def _p(self, theta, v_lp):
        return np.array([theta[0], theta[1], theta[2], theta[3], v_lp, self.v0])

    def __call__(self, theta, sensitivities=True):
        """Simulate at ``theta`` = (a, b, Dc, k, mu0); return a :class:`Run`.

        With ``sensitivities`` each segment runs the forward-sensitivity
        solve (wrt p and y0) and the chain rule carries dy/dp across the
        segment boundaries; otherwise plain BDF solves.
        """
        theta = np.asarray(theta, float)
        y_start, S_start = np.zeros(2), np.zeros((2, N_ODE))
        ys, Ss = [], []
        for v_lp, t, _, solver, plain in self.segments:
            p = self._p(theta, v_lp)
            if sensitivities:
                fs = solver(p=p, y0=y_start)
                ok, msg, y = fs.success, fs.message, fs.y
            else:
                sol = plain(p=p, y0=y_start)
                ok, msg, y = sol.success, sol.message, sol.y
            if not ok or y.shape[0] != t.size:
                return self._failed(f"segment at V_lp = {v_lp:g} m/s: {msg}")
            ys.append(y)
            y_start = y[-1].copy()
            if sensitivities:
                # chain rule through the segment's initial state (module doc)
                S = fs.dy_dp[:, :, :N_ODE] + fs.dy_dy0 @ S_start
                Ss.append(S)
                S_start = S[-1]
        y = np.concatenate(ys)
        a, b, mu0 = theta[0], theta[1], theta[4]
        mu = mu0 + a * y[:, 0] + b * y[:, 1]
        dy = dmu = None
        if sensitivities:
            dy = np.concatenate(Ss)
            dmu = np.empty((y.shape[0], 5))
            dmu[:, :N_ODE] = a * dy[:, 0, :] + b * dy[:, 1, :]
            dmu[:, 0] += y[:, 0]  # explicit dependence of mu on a and b
            dmu[:, 1] += y[:, 1]
            dmu[:, 4] = 1.0
        return Run(self.t, self.displacement, y, mu, dmu, dy, True, "ok")

    def _failed(self, message):
        nan = np.full(self.t.size, np.nan)
        return Run(self.t, self.displacement, np.full((self.t.size, 2), np.nan), nan, None,
                   None, False, message)  # fmt: skip


class VelocityStepObjective(sn.AbstractObjective):
    """Least squares of friction data of a :class:`VelocityStep`, for :func:`sensitivity.fit`.

    Residuals r = (mu(theta) - data) / sigma, their Jacobian from the chained
    forward sensitivities (one set of segment solves per theta, cached).

    Parameters
    ----------
    experiment : VelocityStep
    data : ndarray, shape (nt,)
        Friction at ``experiment.t``.
    sigma : float
        Data standard deviation (sets the residual scale only; fit()'s
        covariance is rescaled by the residual variance).
    """

    name = "velocity step"

    def __init__(self, experiment, data, sigma=1.0):
        self.experiment, self.sigma = experiment, float(sigma)
        self.data = np.asarray(data, float)
        if self.data.shape != experiment.t.shape:
            raise ValueError(f"data must have shape {experiment.t.shape}, got {self.data.shape}")
        self.n_params, self.n_data, self.has_residuals = 5, self.data.size, True
        self.nsolves, self.failures = 0, 0

    def _evaluate(self, theta, need):
        run = self.experiment(theta, sensitivities=bool(need & {"rjac", "grad"}))
        self.nsolves += 1
        if not run.success:
            # NaN residuals make least_squares' trust region step back (as sn.Objective)
            self.failures += 1
            nan = np.full(self.n_data, np.nan)
            return Evaluation(
                value=np.inf, grad=np.full(5, np.nan), residuals=nan,
                rjac=np.full((self.n_data, 5), np.nan))  # fmt: skip
        r = (run.mu - self.data) / self.sigma
        out = Evaluation(value=0.5 * float(r @ r), residuals=r)
        if run.dmu is not None:
            out.rjac = run.dmu / self.sigma
            out.grad = out.rjac.T @ r
        return out
