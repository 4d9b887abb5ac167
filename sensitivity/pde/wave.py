"""2-D acoustic waves: leapfrog in time, 4th order in space, with an exact discrete adjoint.

The equation, in squared slowness ``m = 1/v**2`` with a damping sponge of rate
``sigma`` (1/s; zero inside the physical domain), is

    m u_tt + m sigma u_t - (u_xx + u_zz) = sum_s q_s(t) delta(x - x_s),

discretised with central differences in time (leapfrog) and the 4th-order
central stencil ``(-1/12, 4/3, -5/2, 4/3, -1/12) / h**2`` in space, with
``u = 0`` outside the grid. Per node, with ``A = m (1/dt^2 + sigma/(2 dt))``,
``B = m (1/dt^2 - sigma/(2 dt))``, ``C = 2 m/dt^2``,

    u^{n+1} = A^{-1} [ (C + L) u^n - B u^{n-1} + S q^n ],   u^0 = u^{-1} = 0,
    d^n     = R u^n,                                          n = 0 ... nt-1,

``S`` the source injection (bilinear, divided by the cell area) and ``R`` the
receiver sampling (:mod:`sensitivity.pde.points`). ``L`` is symmetric, so the
discrete adjoint (the exact transpose of the scheme, not a separately
discretised adjoint equation) is the same scheme run backwards:

    mu^n = A^{-1} [ (C + L) mu^{n+1} - B mu^{n+2} + R^T r^n ],   mu^{nt} = mu^{nt+1} = 0,

with ``r^n = d^n - d_obs^n`` for the misfit ``J = 1/2 sum_n |d^n - d_obs^n|^2``.
The gradient with respect to ``m`` is the imaging condition

    dJ/dm = - sum_n mu^{n+1} [ (u^{n+1} - 2 u^n + u^{n-1}) / dt^2
                               + sigma (u^{n+1} - u^{n-1}) / (2 dt) ],

and ``dJ/dv = dJ/dm * (-2 / v**3)``. The wavefields needed by the imaging
condition are stored (store-all) or recomputed from checkpoints of ``(u^n,
u^{n-1})`` chosen by :mod:`sensitivity.sens.checkpoint` within a memory budget
(``u^{n+1}`` is kept from the previous reversed step); both paths evaluate the
same expressions in the same order and give bitwise identical gradients. The
tangent-linear (Born) model uses the same bracket, so the two are transposes
to round-off.

References
----------
.. [1] R.-E. Plessix, "A review of the adjoint-state method for computing the
   gradient of a functional with geophysical applications", Geophys. J. Int.
   167, 495-503, 2006.
.. [2] M. Louboutin et al., "Full-waveform inversion, Part 1: Forward modeling"
   and "Part 2: adjoint modeling", The Leading Edge 36(12), 2017 and 37(1),
   2018 (Devito tutorials; the same equation and sponge formulation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from sensitivity.pde.points import HALO, PointSet, inject, sample
from sensitivity.sens import checkpoint as cp

# 4th-order central second derivative: (-1/12, 4/3, -5/2, 4/3, -1/12) / h^2
D2_4TH = (-5.0 / 2.0, 4.0 / 3.0, -1.0 / 12.0)
# Largest |eigenvalue| * h^2 of that stencil (at the Nyquist wavenumber): 16/3.
_D2_4TH_MAX = 16.0 / 3.0


def ricker(t, f0, t0):
    """Ricker wavelet ``(1 - 2 a) exp(-a)``, ``a = (pi f0 (t - t0))**2``."""
    a = (np.pi * f0 * (np.asarray(t, dtype=float) - t0)) ** 2
    return (1.0 - 2.0 * a) * np.exp(-a)


def cfl_dt(spacing, v_max, safety=0.9):
    """Largest stable leapfrog time step times ``safety``.

    Stability needs ``dt**2 v**2 lambda_max(-L) <= 4`` with ``lambda_max =
    (16/3) (1/hx^2 + 1/hz^2)`` for the 4th-order stencil.
    """
    hx, hz = spacing
    lam = _D2_4TH_MAX * (1.0 / hx**2 + 1.0 / hz**2)
    return float(safety * 2.0 / (v_max * np.sqrt(lam)))


@njit(cache=True, inline="always")
def _lap(u, ii, jj, cs):
    """4th-order Laplacian at padded node (ii, jj); one expression for every kernel,
    so that recomputed values are bitwise equal to the original ones."""
    return (
        (cs[0] + cs[3]) * u[ii, jj]
        + cs[1] * (u[ii - 1, jj] + u[ii + 1, jj])
        + cs[2] * (u[ii - 2, jj] + u[ii + 2, jj])
        + cs[4] * (u[ii, jj - 1] + u[ii, jj + 1])
        + cs[5] * (u[ii, jj - 2] + u[ii, jj + 2])
    )


@njit(cache=True, inline="always")
def _image(a0, a1, a2, sig, idt2, i2dt):
    """``(u^{n+1} - 2u^n + u^{n-1})/dt^2 + sig (u^{n+1} - u^{n-1})/(2 dt)`` at one node: one
    expression for every kernel, so stored and recomputed images are bitwise equal."""
    return (a0 - 2.0 * a1 + a2) * idt2 + sig * ((a0 - a2) * i2dt)


@njit(cache=True)
def step(u, up, un, coef, cs):
    """``un = A^{-1} [(C + L) u - B up]`` on padded fields (also the adjoint step)."""
    ia, c, b = coef[0], coef[1], coef[2]
    nx, nz = ia.shape
    for i in range(nx):
        for j in range(nz):
            lap = _lap(u, i + 2, j + 2, cs)
            un[i + 2, j + 2] = ia[i, j] * (
                c[i, j] * u[i + 2, j + 2] - b[i, j] * up[i + 2, j + 2] + lap
            )


@njit(cache=True)
def adjoint_image_step(m1, m2, m0, coef, cs, un, u, up, o, sig, idt2, i2dt, g):
    """Reversed step: imaging with ``mu^{n+1}``, then ``m0 = A^{-1}[(C + L) m1 - B m2]``.

    ``g -= mu^{n+1} [(u^{n+1} - 2u^n + u^{n-1})/dt^2 + sig (u^{n+1} - u^{n-1})/(2 dt)]``
    is fused into the stencil sweep, so the adjoint field is read once per step.
    The forward fields ``un, u, up`` are read at offset ``o`` (:data:`HALO` when
    padded, 0 when stored without the halo); ``m1, m2, m0`` are padded.
    """
    ia, c, b = coef[0], coef[1], coef[2]
    nx, nz = ia.shape
    for i in range(nx):
        for j in range(nz):
            mu = m1[i + 2, j + 2]
            a0, a1, a2 = un[i + o, j + o], u[i + o, j + o], up[i + o, j + o]
            g[i, j] -= mu * _image(a0, a1, a2, sig[i, j], idt2, i2dt)
            lap = _lap(m1, i + 2, j + 2, cs)
            m0[i + 2, j + 2] = ia[i, j] * (c[i, j] * mu - b[i, j] * m2[i + 2, j + 2] + lap)


@njit(cache=True)
def _forward_loop(nt, coef, cs, sidx, sw, q, ridx, rw, data, ustore):
    """Time loop; ``ustore`` (nt, nx, nz) gets u^n (length 0: not stored)."""
    ia = coef[0]
    nx, nz = ia.shape
    pad = (nx + 4, nz + 4)
    up, u, un = np.zeros(pad), np.zeros(pad), np.zeros(pad)
    for n in range(nt):
        sample(u, ridx, rw, data[n])
        if ustore.shape[0] > 0:
            for i in range(nx):  # explicit loops: slice assignment is slow to compile
                for j in range(nz):
                    ustore[n, i, j] = u[i + 2, j + 2]
        if n == nt - 1:
            break
        step(u, up, un, coef, cs)
        inject(un, sidx, sw, q[n], ia, 2)
        up, u, un = u, un, up


@njit(cache=True)
def _step_image(u, up, un, coef, cs, sig, idt2, i2dt, D):
    """:func:`step`, and the image ``D`` of (un, u, up) while the three are in registers."""
    ia, c, b = coef[0], coef[1], coef[2]
    nx, nz = ia.shape
    for i in range(nx):
        for j in range(nz):
            a1, a2 = u[i + 2, j + 2], up[i + 2, j + 2]
            a0 = ia[i, j] * (c[i, j] * a1 - b[i, j] * a2 + _lap(u, i + 2, j + 2, cs))
            un[i + 2, j + 2] = a0
            D[i, j] = _image(a0, a1, a2, sig[i, j], idt2, i2dt)


@njit(cache=True)
def _forward_loop_images(nt, coef, cs, sidx, sw, q, ridx, rw, data, sig, idt2, i2dt, store):
    """Time loop storing the image ``D^n`` (:func:`_image` of u^{n+1}, u^n, u^{n-1}) of
    every step n < nt - 1 in ``store`` (nt - 1, nx, nz) instead of the fields.

    The reverse pass then reads one stored field per step instead of three: the
    store-all gradient is bound by memory traffic. The image is formed in the step's
    sweep and corrected at the source nodes after the injection.
    """
    ia = coef[0]
    nx, nz = ia.shape
    pad = (nx + 4, nz + 4)
    up, u, un = np.zeros(pad), np.zeros(pad), np.zeros(pad)
    for n in range(nt):
        sample(u, ridx, rw, data[n])
        if n == nt - 1:
            break
        _step_image(u, up, un, coef, cs, sig, idt2, i2dt, store[n])
        inject(un, sidx, sw, q[n], ia, 2)
        D = store[n]
        for p in range(sidx.shape[0]):  # the injected nodes changed after their image
            for k in range(4):
                i, j = sidx[p, k, 0], sidx[p, k, 1]
                D[i, j] = _image(un[i + 2, j + 2], u[i + 2, j + 2], up[i + 2, j + 2],
                                 sig[i, j], idt2, i2dt)  # fmt: skip
        up, u, un = u, un, up


@njit(cache=True)
def _advance(i, j, coef, cs, sidx, sw, q, u, up, s0, s1, s2, iu, iup):
    """Steps i ... j-1 from the padded state (u^i, u^{i-1}); returns (u^j, u^{j-1}).

    Writes only into the scratch fields ``s0, s1, s2`` (never into ``u``,
    ``up``), so that checkpoints are neither copied when restored nor when
    stored. ``iu``, ``iup``: the scratch slots that hold ``u``, ``up`` (-1
    when they are not scratch).
    """
    for n in range(i, j):
        k = 0
        while k == iu or k == iup:
            k += 1
        un = s0 if k == 0 else (s1 if k == 1 else s2)
        step(u, up, un, coef, cs)
        inject(un, sidx, sw, q[n], coef[0], 2)
        up, u = u, un
        iup, iu = iu, k
    return u, up


@njit(cache=True)
def _reverse(n, nt, coef, cs, ridx, rw, d_obs, given, data, r, un, u, up, sig, idt2, i2dt,
             mu, kk, g):  # fmt: skip
    """Reverse step n from the padded forward fields u^{n+1}, u^n, u^{n-1}.

    ``mu`` (3, nx + 4, nz + 4) holds mu^{n+2}, mu^{n+1} and a scratch field at
    ``kk[0] % 3``, ``+1``, ``+2``; ``kk[0]`` advances by one per call (a rotation
    without copies)."""
    sample(u, ridx, rw, data[n])
    if given.shape[0] == 0:
        for k in range(r.shape[1]):
            r[n, k] = data[n, k] - d_obs[n, k]
    else:
        for k in range(r.shape[1]):
            r[n, k] = given[n, k]
    k = kk[0]
    m2, m1, m0 = mu[k % 3], mu[(k + 1) % 3], mu[(k + 2) % 3]
    if n < nt - 1:
        adjoint_image_step(m1, m2, m0, coef, cs, un, u, up, 2, sig, idt2, i2dt, g)
    else:  # mu^{nt} = 0: no imaging term
        step(m1, m2, m0, coef, cs)
    inject(m0, ridx, rw, r[n], coef[0], 2)
    kk[0] = k + 1


@njit(cache=True)
def _adjoint_source_loop(nt, coef, cs, sidx, sw, ridx, rw, r, qbar):
    nx, nz = coef[0].shape
    pad = (nx + 4, nz + 4)
    m2, m1, m0 = np.zeros(pad), np.zeros(pad), np.zeros(pad)  # mu^{n+2}, mu^{n+1}, mu^n
    for n in range(nt - 1, -1, -1):
        sample(m1, sidx, sw, qbar[n])  # dJ/dq^n = S^T mu^{n+1}
        step(m1, m2, m0, coef, cs)
        inject(m0, ridx, rw, r[n], coef[0], 2)
        m2, m1, m0 = m1, m0, m2


@njit(cache=True)
def _born_loop(nt, coef, cs, sidx, sw, q, ridx, rw, dm, sig, idt2, i2dt, data, ddata):
    """Tangent-linear model: ``A du^{n+1} = (C + L) du^n - B du^{n-1} - dm dG^n/dm``
    with ``dG^n/dm`` the bracket of the imaging condition (``dm`` padded)."""
    ia = coef[0]
    nx, nz = ia.shape
    pad = (nx + 4, nz + 4)
    up, u, un = np.zeros(pad), np.zeros(pad), np.zeros(pad)
    dup, du, dun = np.zeros(pad), np.zeros(pad), np.zeros(pad)
    for n in range(nt):
        sample(u, ridx, rw, data[n])
        sample(du, ridx, rw, ddata[n])
        if n == nt - 1:
            break
        step(u, up, un, coef, cs)
        inject(un, sidx, sw, q[n], ia, 2)
        step(du, dup, dun, coef, cs)
        for i in range(nx):
            for j in range(nz):
                a0, a1, a2 = un[i + 2, j + 2], u[i + 2, j + 2], up[i + 2, j + 2]
                dg = (a0 - 2.0 * a1 + a2) * idt2 + sig[i, j] * ((a0 - a2) * i2dt)
                dun[i + 2, j + 2] -= ia[i, j] * (dm[i + 2, j + 2] * dg)
        up, u, un = u, un, up
        dup, du, dun = du, dun, dup


@njit(cache=True)
def _adjoint_loop_stored(nt, coef, cs, ridx, rw, r, store, g):
    """Reverse time loop with the stored images ``store`` (nt - 1, nx, nz)."""
    ia, c, b = coef[0], coef[1], coef[2]
    nx, nz = g.shape
    pad = (nx + 4, nz + 4)
    m2, m1, m0 = np.zeros(pad), np.zeros(pad), np.zeros(pad)
    for n in range(nt - 1, -1, -1):
        if n < nt - 1:  # imaging with mu^{n+1}, fused with the adjoint stencil sweep
            D = store[n]
            for i in range(nx):
                for j in range(nz):
                    mu = m1[i + 2, j + 2]
                    g[i, j] -= mu * D[i, j]
                    lap = _lap(m1, i + 2, j + 2, cs)
                    m0[i + 2, j + 2] = ia[i, j] * (c[i, j] * mu - b[i, j] * m2[i + 2, j + 2]
                                                   + lap)  # fmt: skip
        else:  # mu^{nt} = 0: no imaging term
            step(m1, m2, m0, coef, cs)
        inject(m0, ridx, rw, r[n], ia, 2)
        m2, m1, m0 = m1, m0, m2


_NONE2 = np.empty((0, 1))  # "no given residual" for the compiled reverse step


@dataclass(frozen=True)
class GradientResult:
    """Misfit, gradient and cost of :meth:`Acoustic2D.gradient`.

    Attributes
    ----------
    value : float
        ``1/2 sum |d - d_obs|^2``.
    grad : ndarray, shape (nx, nz)
        dJ/dm (squared slowness).
    residual : ndarray, shape (nt, n_receivers)
    stats : dict
        ``schedule``, ``forward_steps``, ``recompute_factor``,
        ``n_snapshots``, ``stored_bytes`` (peak bytes of stored wavefields)
        and ``budget_bytes``.
    """

    value: float
    grad: np.ndarray
    residual: np.ndarray
    stats: dict


@dataclass(frozen=True)
class Acoustic2D:
    """A 2-D acoustic modelling set-up: grid, time axis, sponge, sources, receivers.

    Parameters
    ----------
    shape : tuple of int
        ``(nx, nz)`` computational nodes (sponge included).
    spacing : tuple of float
        ``(hx, hz)`` in metres.
    dt : float
        Time step in seconds (see :func:`cfl_dt`).
    nt : int
        Number of time samples ``t_n = n dt``, ``n = 0 ... nt-1``.
    sigma : ndarray, shape (nx, nz)
        Damping rate in 1/s (:func:`sensitivity.pde.boundary.sponge`).
    sources, receivers : PointSet
        From :func:`sensitivity.pde.points.point_set` (coordinates of the
        computational grid).
    """

    shape: tuple
    spacing: tuple
    dt: float
    nt: int
    sigma: np.ndarray
    sources: PointSet
    receivers: PointSet

    def __post_init__(self):
        if np.shape(self.sigma) != tuple(self.shape):
            raise ValueError(f"sigma must have shape {self.shape}, got {np.shape(self.sigma)}")
        if not (self.dt > 0 and int(self.nt) >= 2):
            raise ValueError(f"need dt > 0 and nt >= 2, got dt={self.dt}, nt={self.nt}")

    # -- set-up ---------------------------------------------------------------------------
    @property
    def wavefield_bytes(self):
        """Bytes of one padded wavefield."""
        return 8 * (self.shape[0] + 2 * HALO) * (self.shape[1] + 2 * HALO)

    def _cs(self):
        hx, hz = self.spacing
        return np.array([D2_4TH[0] / hx**2, D2_4TH[1] / hx**2, D2_4TH[2] / hx**2,
                         D2_4TH[0] / hz**2, D2_4TH[1] / hz**2, D2_4TH[2] / hz**2])  # fmt: skip

    def coefficients(self, m):
        """``(A^{-1}, C, B)`` per node, stacked, shape (3, nx, nz)."""
        m = self._check_m(m)
        dt = self.dt
        a = m * (1.0 / dt**2 + self.sigma / (2 * dt))
        return np.stack([1.0 / a, 2.0 * m / dt**2, m * (1.0 / dt**2 - self.sigma / (2 * dt))])

    def _check_m(self, m):
        m = np.asarray(m, dtype=float)
        if m.shape != tuple(self.shape):
            raise ValueError(f"m must have shape {tuple(self.shape)}, got {m.shape}")
        if not np.all(np.isfinite(m) & (m > 0)):
            raise ValueError("m (squared slowness) must be finite and positive")
        return m

    def _check_q(self, q):
        q = np.ascontiguousarray(q, dtype=float)
        if q.shape != (self.nt, self.sources.n):
            raise ValueError(f"q must have shape (nt, n_sources) = {(self.nt, self.sources.n)}")
        return q

    def _src_w(self):
        return self.sources.weights / (self.spacing[0] * self.spacing[1])

    # -- operators ------------------------------------------------------------------------
    def forward(self, m, q, save=False):
        """Model receiver data ``d = F(m) q``.

        Parameters
        ----------
        m : ndarray, shape (nx, nz)
            Squared slowness (s^2/m^2).
        q : ndarray, shape (nt, n_sources)
            Source time functions.
        save : bool
            Also return every wavefield, shape (nt, nx, nz).

        Returns
        -------
        data : ndarray, shape (nt, n_receivers)
        wavefields : ndarray, only when ``save``
        """
        coef, q = self.coefficients(m), self._check_q(q)
        data = np.empty((self.nt, self.receivers.n))
        store = np.empty((self.nt if save else 0,) + tuple(self.shape))
        r, s = self.receivers, self.sources
        _forward_loop(self.nt, coef, self._cs(), s.idx, self._src_w(), q, r.idx, r.weights,
                      data, store)  # fmt: skip
        return (data, store) if save else data

    def adjoint_source(self, m, r):
        """The transpose of ``q -> F(m) q``: receiver residuals to source signals.

        Parameters
        ----------
        r : ndarray, shape (nt, n_receivers)

        Returns
        -------
        ndarray, shape (nt, n_sources)
        """
        coef = self.coefficients(m)
        r = np.ascontiguousarray(r, dtype=float)
        if r.shape != (self.nt, self.receivers.n):
            raise ValueError(f"r must have shape (nt, n_receivers) = {(self.nt, self.receivers.n)}")
        qbar = np.zeros((self.nt, self.sources.n))
        s, rc = self.sources, self.receivers
        _adjoint_source_loop(self.nt, coef, self._cs(), s.idx, self._src_w(), rc.idx,
                             rc.weights, r, qbar)  # fmt: skip
        return qbar

    def born(self, m, q, dm):
        """Data and their directional derivative along ``dm`` (tangent-linear model).

        Forward mode, independent of the adjoint: ``(F(m) q, dF/dm[dm] q)``.
        """
        coef, q = self.coefficients(m), self._check_q(q)
        dm = np.ascontiguousarray(dm, dtype=float)
        if dm.shape != tuple(self.shape):
            raise ValueError(f"dm must have shape {tuple(self.shape)}, got {dm.shape}")
        d = np.empty((self.nt, self.receivers.n))
        dd = np.empty_like(d)
        s, r = self.sources, self.receivers
        _born_loop(self.nt, coef, self._cs(), s.idx, self._src_w(), q, r.idx, r.weights,
                   np.pad(dm, HALO), *self._imaging_args(), d, dd)  # fmt: skip
        return d, dd

    # -- gradient -------------------------------------------------------------------------
    def gradient(
        self, m, q, d_obs, memory_budget=None, schedule=None, residual=None, workspace=None
    ):
        """Misfit ``1/2 |F(m) q - d_obs|^2`` and its gradient with respect to ``m``.

        Parameters
        ----------
        m : ndarray, shape (nx, nz)
        q : ndarray, shape (nt, n_sources)
        d_obs : ndarray, shape (nt, n_receivers)
        memory_budget : int or str, optional
            Bytes for the wavefields of this call (``"200MB"``), working arrays
            included. ``None``: store every time step.
        schedule : Schedule, optional
            An explicit :mod:`sensitivity.sens.checkpoint` plan over ``nt``
            steps (overrides ``memory_budget``).
        residual : ndarray, shape (nt, n_receivers), optional
            Back-propagate this instead of ``d - d_obs``: the gradient is then
            ``J^T residual`` with ``J = dF/dm`` (for dot-product tests); the
            value is still ``1/2 |residual|^2``.
        workspace : dict, optional
            Buffers kept between calls: pass the same (initially empty) dict
            to consecutive store-all calls and the wavefield store is
            allocated once. Fresh memory costs page faults comparable to a
            forward modelling on this size of problem.

        Returns
        -------
        GradientResult
        """
        coef, q = self.coefficients(m), self._check_q(q)
        d_obs = np.ascontiguousarray(d_obs, dtype=float)
        if d_obs.shape != (self.nt, self.receivers.n):
            want = (self.nt, self.receivers.n)
            raise ValueError(f"d_obs must have shape (nt, n_receivers) = {want}")
        work = self.working_bytes()
        if schedule is None and memory_budget is not None:
            schedule = cp.from_budget(self.nt, 2 * self.wavefield_bytes, memory_budget, work)
            if schedule.name == "store_all":
                schedule = None
        if schedule is None:
            res = self._gradient_stored(coef, q, d_obs, residual, workspace)
        else:
            res = self._gradient_checkpointed(coef, q, d_obs, schedule, residual)
        res.stats["budget_bytes"] = None if memory_budget is None else cp.parse_bytes(memory_budget)
        return res

    def working_bytes(self):
        """Bytes of the arrays a checkpointed gradient needs besides its checkpoints.

        Padded fields: 3 adjoint, 3 scratch, 2 initial zeros, 1 kept ``u^{n+1}``,
        1 spare; unpadded: 3 coefficients and up to 4 temporaries; data and
        residual (nt, n_receivers); the schedule's actions (~512 bytes a step).
        Checked against tracemalloc in the tests (Camembert shot: 17.5 padded
        fields measured besides checkpoints and plan, 20.5 estimated).
        """
        nx, nz = self.shape
        fields = 10 * self.wavefield_bytes + 8 * 7 * nx * nz
        return fields + 8 * 2 * self.nt * self.receivers.n + 512 * self.nt

    def _imaging_args(self):
        return self.sigma, 1.0 / self.dt**2, 0.5 / self.dt

    def _gradient_stored(self, coef, q, d_obs, residual, workspace):
        data, store = self.forward_stored(coef, q, workspace)
        r = data - d_obs if residual is None else np.array(residual, dtype=float)
        g = np.zeros(self.shape)
        rc = self.receivers
        _adjoint_loop_stored(self.nt, coef, self._cs(), rc.idx, rc.weights, r, store, g)
        stats = dict(schedule="store_all", forward_steps=self.nt - 1, recompute_factor=1.0,
                     n_snapshots=store.shape[0], stored_bytes=store.nbytes)  # fmt: skip
        return GradientResult(0.5 * float(np.sum(r * r)), g, r, stats)

    def forward_stored(self, coef, q, workspace=None):
        """Data and the image of every step, shape (nt - 1, nx, nz).

        The image of step n is ``(u^{n+1} - 2u^n + u^{n-1})/dt^2 + sigma (u^{n+1} -
        u^{n-1})/(2 dt)``, the factor of ``mu^{n+1}`` in the gradient: the reverse pass
        needs nothing else from the forward fields.
        """
        data = np.empty((self.nt, self.receivers.n))
        shape = (self.nt - 1,) + tuple(self.shape)
        store = None if workspace is None else workspace.get("store")
        if store is None or store.shape != shape:
            store = np.empty(shape)
            if workspace is not None:
                workspace["store"] = store
        s, r = self.sources, self.receivers
        _forward_loop_images(self.nt, coef, self._cs(), s.idx, self._src_w(), q, r.idx,
                             r.weights, data, *self._imaging_args(), store)  # fmt: skip
        return data, store

    def _gradient_checkpointed(self, coef, q, d_obs, schedule, residual):
        if schedule.n_steps != self.nt:
            raise ValueError(f"schedule has {schedule.n_steps} steps, expected nt = {self.nt}")
        cs, s, rc, nt = self._cs(), self.sources, self.receivers, self.nt
        sw = self._src_w()
        pad = (self.shape[0] + 4, self.shape[1] + 4)
        data = np.empty((nt, rc.n))
        r = np.empty((nt, rc.n))
        given = _NONE2 if residual is None else np.ascontiguousarray(residual, dtype=float)
        g = np.zeros(self.shape)
        mu = np.zeros((3,) + pad)  # mu^{n+2}, mu^{n+1}, scratch (rotated by kk)
        kk = np.zeros(1, dtype=np.int64)
        img = self._imaging_args()

        # Zero-copy checkpointing: advance writes only into three scratch fields.
        # Storing a state hands its scratch fields to the checkpoint (replacing
        # them by pooled ones); restoring hands the checkpoint's fields back by
        # reference; freeing returns fields nothing else holds to the pool. The
        # u^{n+1} kept for the next reversal's imaging is held the same way.
        scratch = [np.zeros(pad) for _ in range(3)]
        pool, refs = [], {}

        def slot(a):  # compiled kernels return their input arrays as the same objects
            for k in range(3):
                if scratch[k] is a:
                    return k
            return -1

        def hold(state):
            for a in state:
                k = slot(a)
                if k >= 0:  # the holder takes the field; scratch gets another
                    scratch[k] = pool.pop() if pool else np.zeros(pad)
                refs[id(a)] = refs.get(id(a), 0) + 1
            return state

        def release(state):
            for a in state:
                refs[id(a)] -= 1
                if refs[id(a)] == 0:
                    del refs[id(a)]
                    pool.append(a)  # halos are zero: every field keeps them so

        kept = hold((np.zeros(pad),))  # u^{n+1} for the imaging of step n

        def advance(i, j, state):
            u, up = state
            return _advance(i, j, coef, cs, s.idx, sw, q, u, up, *scratch, slot(u), slot(up))

        def reverse(n, state):
            nonlocal kept
            _reverse(n, nt, coef, cs, rc.idx, rc.weights, d_obs, given, data, r, kept[0],
                     state[0], state[1], *img, mu, kk, g)  # fmt: skip
            new = hold((state[0],))
            release(kept)
            kept = new

        zero = (np.zeros(pad), np.zeros(pad))
        st = cp.run(schedule, zero, advance, reverse, copy=hold, restore_copies=False,
                    release=release)  # fmt: skip
        stats = dict(schedule=schedule.name, forward_steps=st.forward_steps,
                     recompute_factor=st.recompute_factor, n_snapshots=st.peak_snapshots,
                     stored_bytes=st.peak_snapshots * 2 * self.wavefield_bytes)  # fmt: skip
        return GradientResult(0.5 * float(np.sum(r * r)), g, r, stats)
