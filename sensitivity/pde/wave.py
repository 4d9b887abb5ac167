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

and ``dJ/dv = dJ/dm * (-2 / v**3)``. The bracket ``G^n`` equals ``(A u^{n+1} -
C u^n + B u^{n-1}) / m``, so by the scheme ``A^{-1} m G^n = D^n`` with

    D^n = u^{n+1} - u^{n-1} - alpha (u^n - u^{n-1}),   alpha = A^{-1} C,

and ``m^{-1} A = 1/dt^2 + sigma/(2 dt)`` does not depend on n: the kernels
accumulate ``-sum_n mu^{n+1} D^n`` with the coefficient ``alpha`` their step
already reads, and the sum is scaled once at the end. The images ``D^n`` are
stored (store-all: one field per step, formed in the forward sweep) or
recomputed from checkpoints of ``(u^n, u^{n-1})`` chosen by
:mod:`sensitivity.sens.checkpoint` within a memory budget (``u^{n+1}`` is kept
from the previous reversed step); both paths evaluate the same expressions in
the same order and give bitwise identical gradients. The tangent-linear (Born)
model forms ``G^n`` from its definition above, so the dot-product test between
it and the gradient also checks this rewriting. The compiled sweeps are in
:mod:`sensitivity.pde.wave_kernels`.

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

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sensitivity._memory import aligned_array
from sensitivity.pde import wave_kernels as wk
from sensitivity.pde.points import HALO, PointSet
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

    def _kernel_args(self, m):
        """``(alpha, A^{-1}, A^{-1} unpadded, cs, W)``: the arguments every sweep takes.

        ``alpha = A^{-1} C = 2 / (1 + sigma dt / 2)`` and ``A^{-1}`` in the sweep
        layout of :mod:`sensitivity.pde.wave_kernels` (zero in the halo columns).
        """
        m = self._check_m(m)
        dt = self.dt
        ia = 1.0 / (m * (1.0 / dt**2 + self.sigma / (2 * dt)))
        al = 2.0 / (1.0 + (0.5 * dt) * self.sigma)
        return _sweep(al), _sweep(ia), ia, self._cs(), self.shape[1] + 2 * HALO

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

    def _imaging_args(self):
        return _sweep(self.sigma), 1.0 / self.dt**2, 0.5 / self.dt

    def _image_scale(self, g):
        """dJ/dm (nx, nz) from the kernels' ``-sum_n mu^{n+1} D^n`` (sweep layout).

        The kernels' image ``D^n = u^{n+1} - u^{n-1} - alpha (u^n - u^{n-1})`` is
        ``A^{-1} (L u^n + S q^n) = A^{-1} m G^n`` by the scheme, with ``G^n`` the image
        of the module docstring; ``m^{-1} A = 1/dt^2 + sigma/(2 dt)`` is constant in
        time, so it scales the sum once.
        """
        return _unsweep(g, self.shape) * (1.0 / self.dt**2 + self.sigma / (2 * self.dt))

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
        k, q = self._kernel_args(m), self._check_q(q)
        data = np.empty((self.nt, self.receivers.n))
        store = np.empty((self.nt if save else 0,) + tuple(self.shape))
        r, s = self.receivers, self.sources
        wk.forward_loop(self.nt, *k, s.idx, self._src_w(), q, r.idx, r.weights, data, store)
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
        k = self._kernel_args(m)
        r = np.ascontiguousarray(r, dtype=float)
        if r.shape != (self.nt, self.receivers.n):
            raise ValueError(f"r must have shape (nt, n_receivers) = {(self.nt, self.receivers.n)}")
        qbar = np.zeros((self.nt, self.sources.n))
        s, rc = self.sources, self.receivers
        wk.adjoint_source_loop(self.nt, *k, s.idx, self._src_w(), rc.idx, rc.weights, r, qbar)
        return qbar

    def born(self, m, q, dm):
        """Data and their directional derivative along ``dm`` (tangent-linear model).

        Forward mode, independent of the adjoint: ``(F(m) q, dF/dm[dm] q)``.
        """
        k, q = self._kernel_args(m), self._check_q(q)
        dm = np.ascontiguousarray(dm, dtype=float)
        if dm.shape != tuple(self.shape):
            raise ValueError(f"dm must have shape {tuple(self.shape)}, got {dm.shape}")
        d = np.empty((self.nt, self.receivers.n))
        dd = np.empty_like(d)
        s, r = self.sources, self.receivers
        wk.born_loop(self.nt, *k, s.idx, self._src_w(), q, r.idx, r.weights, _sweep(dm),
                     *self._imaging_args(), d, dd)  # fmt: skip
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
            An explicit offline :mod:`sensitivity.sens.checkpoint` plan over
            ``nt`` steps (overrides ``memory_budget``).
        residual : ndarray, shape (nt, n_receivers), optional
            Back-propagate this instead of ``d - d_obs``: the gradient is then
            ``J^T residual`` with ``J = dF/dm`` (for dot-product tests); the
            value is still ``1/2 |residual|^2``.
        workspace : None, dict or False
            Where the store-all gradient keeps its image store (``nt - 1``
            fields, the bulk of its memory). ``None``: a store shared by the
            calls of this process, kept after the call so that the next
            gradient (an inversion makes many) does not pay the page faults
            of fresh memory (about half a forward modelling of the Camembert
            shot); free it with :func:`free_workspace`. A dict: buffers kept
            in it (initially empty) instead. ``False``: a fresh store, freed
            on return.

        Returns
        -------
        GradientResult
        """
        k, q = self._kernel_args(m), self._check_q(q)
        d_obs = np.ascontiguousarray(d_obs, dtype=float)
        if d_obs.shape != (self.nt, self.receivers.n):
            want = (self.nt, self.receivers.n)
            raise ValueError(f"d_obs must have shape (nt, n_receivers) = {want}")
        acts = None
        if schedule is None and memory_budget is not None:
            budget = cp.parse_bytes(memory_budget)
            schedule, acts = _budget_plan(self.nt, 2 * self.wavefield_bytes, budget,
                                          self.working_bytes())  # fmt: skip
        if schedule is not None and schedule.n_steps != self.nt:
            raise ValueError(f"schedule has {schedule.n_steps} steps, expected nt = {self.nt}")
        if schedule is None or schedule.name == "store_all":
            res = self._gradient_stored(k, q, d_obs, residual, workspace)
        else:
            res = self._gradient_checkpointed(k, q, d_obs, schedule, residual, acts)
        res.stats["budget_bytes"] = None if memory_budget is None else cp.parse_bytes(memory_budget)
        return res

    def working_bytes(self):
        """Bytes of the arrays a checkpointed gradient needs besides its checkpoints.

        Padded fields: 4 of the pool beyond two per checkpoint (the current
        state, the step's output, the kept u^{n+1}), 2 adjoint, 1 spare;
        4 arrays of (nx, nz + 4): two coefficients, the gradient and the
        unpadded A^{-1}; the residual (nt, n_receivers); the schedule's actions
        (~512 bytes a step). Checked against tracemalloc in the tests.
        """
        nx, nz = self.shape
        fields = 7 * self.wavefield_bytes + 8 * 4 * nx * (nz + 2 * HALO)
        return fields + 8 * self.nt * self.receivers.n + 512 * self.nt

    def _gradient_stored(self, k, q, d_obs, residual, workspace):
        data, store, work = self._forward_images(k, q, workspace)
        r = data - d_obs if residual is None else np.array(residual, dtype=float)
        g = np.zeros(k[0].shape)
        rc = self.receivers
        wk.adjoint_loop_stored(self.nt, *k, rc.idx, rc.weights, r, store, work, g)
        stats = dict(schedule="store_all", forward_steps=self.nt - 1, recompute_factor=1.0,
                     n_snapshots=store.shape[0], stored_bytes=store.nbytes)  # fmt: skip
        if workspace is None:
            _SHARED.give_back(store, work)
        return GradientResult(0.5 * float(np.sum(r * r)), self._image_scale(g), r, stats)

    def _forward_images(self, k, q, workspace):
        """Data and the image of every step, shape (nt - 1, nx * (nz + 4) rounded up to a
        multiple of 8), and 2 work fields.

        The image of step n is ``D^n = u^{n+1} - u^{n-1} - alpha (u^n - u^{n-1})`` (the
        module docstring), the factor of ``mu^{n+1}`` in the gradient: the reverse
        pass needs nothing else from the forward fields.
        """
        data = np.empty((self.nt, self.receivers.n))
        # rows of whole 64-byte lines: each vector of eight images stays in one line
        shape = (self.nt - 1, -(-k[0].shape[0] // 8) * 8)
        wshape = (2, (self.shape[0] + 2 * HALO) * k[4])
        if workspace is None:
            store, work = _SHARED.take(shape, wshape)
        elif workspace is False:
            store, work = aligned_array(shape), np.empty(wshape)
        else:
            store, work = workspace.get("store"), workspace.get("work")
            if store is None or store.shape != shape or work.shape != wshape:
                store, work = aligned_array(shape), np.empty(wshape)
                workspace.update(store=store, work=work)
        s, r = self.sources, self.receivers
        wk.forward_loop_images(self.nt, *k, s.idx, self._src_w(), q, r.idx, r.weights, data,
                               store, work)  # fmt: skip
        return data, store, work

    def _gradient_checkpointed(self, k, q, d_obs, schedule, residual, acts=None):
        if schedule.initial:
            raise ValueError("schedule: plans that start from stored checkpoints are not supported")
        s, rc, nt = self.sources, self.receivers, self.nt
        acts = _encode(schedule) if acts is None else acts
        size = (self.shape[0] + 2 * HALO) * k[4]
        # two fields per checkpoint, the current state, the step's output, the kept u^{n+1}
        pool = np.zeros((2 * schedule.n_snapshots + 4, size))
        mu = np.zeros((2, size))
        r = np.empty((nt, rc.n))
        given = _NONE2 if residual is None else np.ascontiguousarray(residual, dtype=float)
        g = np.zeros(k[0].shape)
        fwd, peak = wk.run_checkpointed(acts, nt, *k, s.idx, self._src_w(), q, rc.idx,
                                        rc.weights, d_obs, given, r, pool, mu, g)  # fmt: skip
        del pool, mu  # before the temporaries of the gradient's scaling
        stats = dict(schedule=schedule.name, forward_steps=int(fwd),
                     recompute_factor=fwd / nt, n_snapshots=int(peak),
                     stored_bytes=int(peak) * 2 * self.wavefield_bytes)  # fmt: skip
        return GradientResult(0.5 * float(np.sum(r * r)), self._image_scale(g), r, stats)


_CODES = {kind: code for code, kind in enumerate(cp.ACTION_KINDS)}
assert [_CODES[k] for k in ("store", "restore", "free", "advance", "reverse")] == [
    wk.STORE,
    wk.RESTORE,
    wk.FREE,
    wk.ADVANCE,
    wk.REVERSE,
]


def _encode(schedule):
    """A schedule's actions as rows ``(code, i, j)`` for :func:`wave_kernels.run_checkpointed`."""
    return np.array([(_CODES[a.kind], a.i, a.j) for a in schedule.actions], dtype=np.int64)


@lru_cache(maxsize=16)
def _budget_plan(nt, state_bytes, budget, working_bytes):
    """The schedule of a memory budget, and its coded actions: built once (planning
    a binomial schedule of ~600 steps takes a quarter of a forward modelling)."""
    schedule = cp.from_budget(nt, state_bytes, budget, working_bytes)
    return schedule, None if schedule.name == "store_all" else _encode(schedule)


def _sweep(x):
    """An (nx, nz) field in the sweep layout of :mod:`~sensitivity.pde.wave_kernels`:
    rows of ``nz + 4`` with zero halo columns, raveled, shape (nx * (nz + 4),)."""
    return np.pad(np.asarray(x, dtype=float), ((0, 0), (HALO, HALO))).ravel()


def _unsweep(x, shape):
    """The inverse of :func:`_sweep`: shape (nx, nz) (a copy)."""
    return x.reshape(shape[0], shape[1] + 2 * HALO)[:, HALO:-HALO].copy()


class _SharedStore:
    """The store-all image store kept between gradients of this process.

    :meth:`take` hands it out (or fresh arrays when it is missing, has another
    shape or is in use by another thread); :meth:`give_back` keeps the last one
    returned. One store is kept at most.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._kept = None

    def take(self, shape, wshape):
        with self._lock:
            kept, self._kept = self._kept, None
        if kept is not None and kept[0].shape == shape and kept[1].shape == wshape:
            return kept
        del kept  # another problem's store: free it before allocating
        return aligned_array(shape), np.empty(wshape)

    def give_back(self, store, work):
        with self._lock:
            self._kept = (store, work)

    def free(self):
        with self._lock:
            self._kept = None


_SHARED = _SharedStore()


def free_workspace():
    """Free the store that store-all gradients keep between calls (``workspace=None``).

    It holds ``nt - 1`` fields of the last problem (169 MB for one shot of the
    Camembert set-up); the next store-all gradient allocates it again.
    """
    _SHARED.free()
