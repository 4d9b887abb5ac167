"""Full-waveform inversion: L2 misfit over shots and its gradient in velocity.

The unknown is the velocity ``v`` (m/s) on the *physical* grid; the
computational grid adds an absorbing layer of ``nbl`` cells on every side in
which the model is the edge value of the physical one (an extension ``E`` whose
exact transpose sums the layer back onto the edge). For shot ``k``

    J_k(v) = 1/2 sum_n |R u_k^n(m) - d_k^n|^2,    m = E(v)^-2,

and ``J = sum_k J_k``. The gradient is ``E^T [ dJ/dm * (-2 / E(v)^3) ]`` with
``dJ/dm`` from the discrete adjoint of :mod:`sensitivity.pde.wave` (the exact
gradient of the computed misfit).

Shots are independent: they are mapped over an ``executor`` with
:func:`sensitivity.inverse.executors.parallel_map`: ``None`` (in this process,
in order: the default), a ``concurrent.futures.Executor`` or a
``dask.distributed.Client``. Results are summed in shot order, so the value and
gradient do not depend on the executor; a failing shot raises ``TermError``
naming it.

:func:`camembert` builds the "Camembert" cross-hole benchmark of Devito's FWI
tutorial (Louboutin et al., The Leading Edge, 2017-2018; after Gauthier,
Virieux & Tarantola, Geophysics 51, 1986).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse.linalg import LinearOperator

from sensitivity.inverse.executors import parallel_map
from sensitivity.inverse.objective import AbstractObjective, Evaluation, SumObjective
from sensitivity.pde.boundary import sponge
from sensitivity.pde.points import point_set
from sensitivity.pde.wave import Acoustic2D, cfl_dt, ricker


@dataclass(frozen=True)
class FWIProblem:
    """A multi-shot 2-D acoustic FWI set-up on a physical grid plus a sponge.

    Parameters
    ----------
    shape : tuple of int
        Physical nodes ``(nx, nz)``.
    spacing : tuple of float
        ``(hx, hz)`` in metres.
    nbl : int
        Absorbing layer thickness in cells (each side).
    dt : float
        Time step (s).
    nt : int
        Time samples.
    sources : ndarray, shape (n_shots, 2)
        One source position ``(x, z)`` per shot (m, physical coordinates).
    receivers : ndarray, shape (n_receivers, 2)
        Receiver positions, shared by all shots.
    wavelet : ndarray, shape (nt,)
        Source time function.
    v_max : float
        Largest velocity the sponge and time step are designed for.
    """

    shape: tuple
    spacing: tuple
    nbl: int
    dt: float
    nt: int
    sources: np.ndarray
    receivers: np.ndarray
    wavelet: np.ndarray
    v_max: float

    def __post_init__(self):
        if len(self.shape) != 2 or min(self.shape) < 2:
            raise ValueError(f"shape must be two ints >= 2, got {self.shape}")
        if int(self.nbl) < 0 or not (self.dt > 0) or int(self.nt) < 2 or not (self.v_max > 0):
            raise ValueError("need nbl >= 0, dt > 0, nt >= 2 and v_max > 0")
        for name in ("sources", "receivers"):
            a = np.asarray(getattr(self, name))
            if a.ndim != 2 or a.shape[1] != 2 or not np.all(np.isfinite(a)):
                raise ValueError(f"{name} must be a finite array of shape (n, 2), got {a.shape}")
        if np.shape(self.wavelet) != (self.nt,):
            raise ValueError(f"wavelet must have shape (nt,) = ({self.nt},)")
        if self.dt > cfl_dt(self.spacing, self.v_max, safety=1.0):
            raise ValueError(f"dt = {self.dt} s exceeds the CFL limit at v_max = {self.v_max}")

    @property
    def comp_shape(self):
        return (self.shape[0] + 2 * self.nbl, self.shape[1] + 2 * self.nbl)

    @property
    def n_shots(self):
        return len(self.sources)

    def shot(self, k):
        """The :class:`~sensitivity.pde.wave.Acoustic2D` set-up of shot ``k``."""
        off = self.nbl * np.asarray(self.spacing)
        sig = sponge(self.comp_shape, self.nbl, self.spacing, self.v_max)
        src = point_set(np.asarray(self.sources[k])[None] + off, self.comp_shape, self.spacing)
        rec = point_set(np.asarray(self.receivers) + off, self.comp_shape, self.spacing)
        return Acoustic2D(self.comp_shape, self.spacing, self.dt, self.nt, sig, src, rec)

    def extend(self, v, check=True):
        """``E v``: the physical model extended into the layer by edge values.

        ``check=False`` extends any field (a perturbation) without validation.
        """
        v = self._check_v(v) if check else np.asarray(v, dtype=float)
        ix, iz = self._edge_index()
        return v[np.ix_(ix, iz)]

    def extend_adjoint(self, g):
        """``E^T g``: layer values summed onto the physical edge."""
        ix, iz = self._edge_index()
        tmp = np.zeros((self.shape[0], g.shape[1]))
        np.add.at(tmp, ix, g)
        out = np.zeros(self.shape)
        np.add.at(out.T, iz, tmp.T)
        return out

    def _names(self):
        return [f"shot {k} (source at {tuple(self.sources[k])} m)" for k in range(self.n_shots)]

    def _edge_index(self):
        nx, nz = self.shape
        ix = np.clip(np.arange(nx + 2 * self.nbl) - self.nbl, 0, nx - 1)
        iz = np.clip(np.arange(nz + 2 * self.nbl) - self.nbl, 0, nz - 1)
        return ix, iz

    def _check_v(self, v):
        v = np.asarray(v, dtype=float)
        if v.shape != tuple(self.shape):
            raise ValueError(f"v must have shape {tuple(self.shape)}, got {v.shape}")
        if not np.all(np.isfinite(v) & (v > 0)):
            raise ValueError("v must be finite and positive")
        if v.max() > self.v_max * (1 + 1e-12):
            raise ValueError(
                f"v reaches {v.max():.6g} m/s, above v_max = {self.v_max} the time step "
                "was chosen for (unstable): clip v or build the problem with a larger v_max"
            )
        return v

    def modelled_data(self, v, executor=None):
        """Receiver data of every shot, shape (n_shots, nt, n_receivers)."""
        m = self.extend(v) ** -2.0
        jobs = [(self, k, m) for k in range(self.n_shots)]
        return np.stack(parallel_map(executor, _shot_forward, jobs, self._names()))

    def misfit_gradient(self, v, d_obs, executor=None, memory_budget=None):
        """Misfit ``J(v)`` and ``dJ/dv`` summed over shots.

        Parameters
        ----------
        v : ndarray, shape (nx, nz)
            Velocity (m/s) on the physical grid.
        d_obs : ndarray, shape (n_shots, nt, n_receivers)
        executor : None, concurrent.futures.Executor or dask.distributed.Client
            Where the shots run (:func:`~sensitivity.inverse.executors.parallel_map`).
        memory_budget : int or str, optional
            Per-shot budget for stored wavefields (``"200MB"``); default
            store-all, whose store each process keeps between calls (one
            shot's worth; :func:`sensitivity.pde.wave.free_workspace` frees it).

        Returns
        -------
        value : float
        grad : ndarray, shape (nx, nz)
        stats : list of dict
            Per shot (:class:`~sensitivity.pde.wave.GradientResult` stats).
        """
        ve = self.extend(v)
        d_obs = np.asarray(d_obs, dtype=float)
        want = (self.n_shots, self.nt, len(self.receivers))
        if d_obs.shape != want:
            raise ValueError(f"d_obs must have shape (n_shots, nt, n_receivers) = {want}")
        m = ve**-2.0
        jobs = [(self, k, m, d_obs[k], memory_budget) for k in range(self.n_shots)]
        results = parallel_map(executor, _shot_gradient, jobs, self._names())
        value = float(sum(r[0] for r in results))
        gm = np.sum([r[1] for r in results], axis=0)
        grad = self.extend_adjoint(gm * (-2.0 / ve**3))
        return value, grad, [r[2] for r in results]

    def objective(self, d_obs, executor=None, memory_budget=None):
        """The misfit as an inversion-layer objective of the raveled velocity.

        A :class:`~sensitivity.inverse.objective.SumObjective` of one
        :class:`ShotObjective` per shot, evaluated with ``executor``: it plugs
        into :func:`sensitivity.fit` and ``scipy.optimize`` (``fun``,
        ``fun_and_jac``, ``residuals``, ``residual_jac`` as a LinearOperator
        of Born modelling and its adjoint, Gauss-Newton ``hessp``).
        """
        d_obs = np.asarray(d_obs, dtype=float)
        want = (self.n_shots, self.nt, len(self.receivers))
        if d_obs.shape != want:
            raise ValueError(f"d_obs must have shape (n_shots, nt, n_receivers) = {want}")
        parts = [ShotObjective(self, k, d_obs[k], memory_budget) for k in range(self.n_shots)]
        return SumObjective(parts, executor=executor)


class ShotObjective(AbstractObjective):
    """``1/2 |d_k(v) - d_obs_k|^2`` of one shot, theta = velocity raveled (C order).

    Residuals ``r = d_k(v) - d_obs_k`` raveled (nt * n_receivers); their
    Jacobian is a LinearOperator: ``matvec`` runs the tangent-linear (Born)
    model, ``rmatvec`` the adjoint with the given residual.
    """

    def __init__(self, problem, k, d_obs, memory_budget=None):
        self.problem, self.k, self.memory_budget = problem, int(k), memory_budget
        self.d_obs = np.asarray(d_obs, dtype=float)
        self.n_params = int(np.prod(problem.shape))
        self.n_data = self.d_obs.size
        self.name = f"shot {k}"

    def _evaluate(self, theta, need):
        pb = self.problem
        ve = pb.extend(theta.reshape(pb.shape))
        m, dm_dv = ve**-2.0, -2.0 * ve**-3.0
        shot, q = pb.shot(self.k), pb.wavelet[:, None]
        out = Evaluation()
        if "grad" in need:
            res = shot.gradient(m, q, self.d_obs, memory_budget=self.memory_budget)
            out.grad = pb.extend_adjoint(res.grad * dm_dv).ravel()
            r = res.residual
        else:
            r = shot.forward(m, q) - self.d_obs
        out.residuals, out.value = r.ravel(), 0.5 * float(np.sum(r * r))
        if "rjac" in need:
            shape, d0 = self.d_obs.shape, self.d_obs

            def matvec(dv):
                dm = pb.extend(np.reshape(dv, pb.shape), check=False) * dm_dv
                return shot.born(m, q, dm)[1].ravel()

            def rmatvec(w):
                g = shot.gradient(m, q, d0, residual=np.reshape(w, shape)).grad
                return pb.extend_adjoint(g * dm_dv).ravel()

            out.rjac = LinearOperator((self.n_data, self.n_params), matvec=matvec,
                                      rmatvec=rmatvec, dtype=float)  # fmt: skip
        return out


def _shot_forward(job):
    problem, k, m = job
    return problem.shot(k).forward(m, problem.wavelet[:, None])


def _shot_gradient(job):
    problem, k, m, d, budget = job
    shot = problem.shot(k)
    res = shot.gradient(m, problem.wavelet[:, None], d, memory_budget=budget)
    return res.value, res.grad, res.stats


def camembert(shape=(101, 101), spacing=(10.0, 10.0), nbl=40, t_end=1.0, f0=10.0,
              n_sources=9, n_receivers=101, v_max=3500.0, radius=150.0):  # fmt: skip
    """The Camembert cross-hole set-up (SI units) and its true and starting models.

    Defaults: 101 x 101 nodes of 10 m (1 km square) plus a 40-cell sponge;
    background 2500 m/s, a disc of radius 150 m at the centre at 3000 m/s;
    Ricker wavelet of 10 Hz delayed by 1/f0 = 0.1 s; sources at x = 30 m,
    z = linspace(0, 1000, 9); receivers at x = 980 m, z = linspace(0, 1000, 101);
    0-1 s with the time step 0.9 x the CFL limit at ``v_max`` (the upper
    clip of the inversion). Smaller ``shape``/``t_end`` give quick versions
    with the geometry scaled to the model size.

    Returns
    -------
    problem : FWIProblem
    v_true, v0 : ndarray, shape ``shape``
    """
    nx, nz = shape
    hx, hz = spacing
    lx, lz = (nx - 1) * hx, (nz - 1) * hz
    dt = cfl_dt(spacing, v_max)
    nt = int(np.floor(t_end / dt)) + 1
    t = np.arange(nt) * dt
    src = np.c_[np.full(n_sources, 0.03 * lx), np.linspace(0, lz, n_sources)]
    rec = np.c_[np.full(n_receivers, 0.98 * lx), np.linspace(0, lz, n_receivers)]
    x = np.arange(nx)[:, None] * hx
    z = np.arange(nz)[None, :] * hz
    v0 = np.full(shape, 2500.0)
    v_true = np.where((x - lx / 2) ** 2 + (z - lz / 2) ** 2 <= radius**2, 3000.0, 2500.0)
    problem = FWIProblem(tuple(shape), tuple(spacing), int(nbl), dt, nt, src, rec,
                         ricker(t, f0, 1.0 / f0), v_max)  # fmt: skip
    return problem, v_true, v0
