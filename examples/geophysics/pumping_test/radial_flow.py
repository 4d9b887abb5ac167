"""Radial groundwater flow to a pumped well, written as a user's right-hand side.

Drawdown s(r, t) (m, positive down) around a well pumping Q (m^3/d) from an
aquifer of transmissivity T (m^2/d) and storativity S (-), optionally leaking
through an aquitard of hydraulic resistance c (d)::

    S ds/dt = T (1/r) d/dr (r ds/dr) - s/c        r_well < r < r_outer
    2 pi r T ds/dr = -Q                           at r = r_well (the pumping)
    s = 0                                         at r = r_outer
    s = 0                                         at t = 0

Finite volumes on a log-spaced grid (:class:`sensitivity.pde.RadialGrid1D`,
geometry per radian and unit thickness): cell i of volume
``V_i = (r_hi^2 - r_lo^2) / 2`` exchanges ``T (s_j - s_i) / ln(r_j / r_i)``
with each neighbour j (exact for the steady profile s ~ ln r), the outermost
cell drains to s = 0 at ``r_outer`` through ``ln(r_outer / r_c)``, and the
innermost receives ``Q / (2 pi)``::

    S V_i ds_i/dt = T sum_j (s_j - s_i) / ln(r_j / r_i) + [i = 0] Q / (2 pi) - V_i s_i / c

The right-hand side below is plain numba-style Python with the parameters
``p = [T, S]`` (confined) or ``[T, S, c]`` (leaky); the toolkit compiles it
for floats and for dual numbers and so differentiates it: nobody writes
ds/dT by hand. Piezometer readings interpolate the cell values quadratically
in ln r (the variable in which s is smooth).
"""

from __future__ import annotations

import numpy as np

import sensitivity as sn
from sensitivity.pde import RadialGrid1D

R_WELL = 0.1  # m: radius of the pumped well (the inner boundary)
R_OUTER = 1e5  # m: s = 0 here; ~40x the cone's reach over the tests' hours
CELLS_PER_DECADE = 20  # grid resolution: 2.5e-4 m of discretisation error at 30 m


def radial_grid(cells_per_decade=CELLS_PER_DECADE, r_well=R_WELL, r_outer=R_OUTER):
    """The log-spaced grid from the well to the outer boundary."""
    n = int(round(cells_per_decade * np.log10(r_outer / r_well)))
    return RadialGrid1D(r_well, r_outer, n)


def radial_flow_rhs(grid, Q):
    """The right-hand side ``f(t, y, p, dydt)`` of the radial flow equation.

    Parameters
    ----------
    grid : RadialGrid1D
        ``n`` cells from the well radius to the outer radius.
    Q : float
        Pumping rate (m^3/d).

    Returns
    -------
    callable
        ``f(t, y, p, dydt)`` with ``y`` (n,) the drawdown per cell (m) and
        ``p = [T, S]`` or ``[T, S, c]`` (m^2/d, -, d): the leakage term is
        on when ``p`` holds c.
    """
    n = grid.n
    inv_vol = 1.0 / grid.volume
    # g[i]: conductance per radian between the centres of cells i-1 and i;
    # g[0] = 0 (the well face passes only Q), g[n]: last centre to s = 0 at r_outer
    g = np.zeros(n + 1)
    g[1:n] = 1.0 / (grid.res_hi[:-1] + grid.res_lo[1:])
    g[n] = 1.0 / grid.res_hi[-1]
    q_well = Q / (2.0 * np.pi) * inv_vol[0]  # per radian, into cell 0

    def f(t, y, p, dydt):
        T, S = p[0], p[1]
        for i in range(n):
            flow = -g[i + 1] * y[i]
            if i + 1 < n:
                flow = flow + g[i + 1] * y[i + 1]
            if i > 0:
                flow = flow + g[i] * (y[i - 1] - y[i])
            dydt[i] = T * inv_vol[i] * flow / S
        dydt[0] = dydt[0] + q_well / S
        if p.shape[0] > 2:  # leaky aquifer: the aquitard feeds back s / c
            for i in range(n):
                dydt[i] = dydt[i] - y[i] / (S * p[2])

    return f


def interpolation(grid, r):
    """Cells and weights that read the drawdown at radius ``r``.

    Quadratic Lagrange interpolation in ln r over the three cell centres
    nearest to ``r``.

    Returns
    -------
    i : int
        First of the three cells.
    w : ndarray, shape (3,)
        Weights of cells i, i+1, i+2 (they sum to 1).
    """
    x = np.log(np.asarray(grid.centres))
    xr = np.log(r)
    if not grid.centres[1] <= r <= grid.centres[-2]:
        raise ValueError(f"r = {r} m lies outside the grid's interior cells")
    i = int(np.clip(np.argmin(np.abs(x - xr)) - 1, 0, grid.n - 3))
    xs = x[i : i + 3]
    w = np.array(
        [np.prod([(xr - xs[k]) / (xs[j] - xs[k]) for k in range(3) if k != j]) for j in range(3)]
    )
    return i, w


def observer(grid, r):
    """``observe(t, y, p, out)``: the drawdown at radius ``r`` (for ``sn.L2Misfit``)."""
    i, (w0, w1, w2) = interpolation(grid, r)

    def observe(t, y, p, out):
        out[0] = w0 * y[i] + w1 * y[i + 1] + w2 * y[i + 2]

    return observe


class RadialFlowModel:
    """The radial flow problem of one pumping test on one grid.

    Parameters
    ----------
    Q : float
        Pumping rate (m^3/d).
    t_end : float
        End of the simulated period (d).
    p : array_like, shape (2,) or (3,)
        ``[T, S]`` or ``[T, S, c]``: the starting parameters.
    grid : RadialGrid1D, optional
        Default :func:`radial_grid`.
    """

    def __init__(self, Q, t_end, p, grid=None):
        self.Q = float(Q)
        self.grid = radial_grid() if grid is None else grid
        self.f = radial_flow_rhs(self.grid, self.Q)
        n = self.grid.n
        # jac_sparsity=False: at n ~ 100 the compiled dense BDF (dense LU) outruns the
        # banded path, whose step loop runs in Python (~6x slower with sensitivities)
        self.problem = sn.ODEProblem(
            self.f, np.zeros(n), (0.0, float(t_end)), p, jac_sparsity=False
        )

    def observer(self, r):
        """``observe(t, y, p, out)``: the drawdown at radius ``r`` on this model's grid."""
        return observer(self.grid, r)

    def solve(self, p, t, rtol=1e-8, atol=1e-10):
        """Drawdown in every cell at times ``t`` (sorted), shape (nt, n)."""
        sol = sn.Solver(self.problem, "BDF", t, rtol, atol)(p=np.asarray(p, dtype=float))
        if not sol.success:
            raise RuntimeError(f"the radial flow solve failed: {sol.message}")
        return sol.y

    def drawdowns(self, p, radii, t, rtol=1e-8, atol=1e-10, rate=False):
        """Drawdown at each radius (m), shape (len(radii), nt), from one solve.

        With ``rate=True`` also ds/dt (m/d), same shape.
        """
        p = np.asarray(p, dtype=float)
        t = np.asarray(t, dtype=float)
        Y = self.solve(p, t, rtol, atol)
        reads = [interpolation(self.grid, r) for r in radii]
        s = np.array([Y[:, i : i + 3] @ w for i, w in reads])
        if not rate:
            return s
        F = np.array([self.problem.rhs(float(tk), yk, p) for tk, yk in zip(t, Y)])
        return s, np.array([F[:, i : i + 3] @ w for i, w in reads])

    def readings(self, p, radii, times, rtol=1e-8, atol=1e-10):
        """Drawdown at each piezometer's own times, from one solve at their union.

        Parameters
        ----------
        p : array_like, shape (2,) or (3,)
        radii : sequence of float, length k
        times : sequence of k sorted arrays (d)

        Returns
        -------
        list of k ndarrays, shaped like ``times``
        """
        t_all = np.unique(np.concatenate(times))
        s = self.drawdowns(p, radii, t_all, rtol, atol)
        return [s[k][np.searchsorted(t_all, t)] for k, t in enumerate(times)]
