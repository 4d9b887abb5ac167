"""Method of lines: a PDE on a 1-D grid as an ODE system with known sparsity.

``c_i du_i/dt = div(k grad u)_i`` (:func:`sensitivity.pde.operators.flux_divergence`)
with the conductivity per cell ``k`` as the parameters ``p``, on a
:class:`~sensitivity.pde.grids.Grid1D` (diffusion) or a
:class:`~sensitivity.pde.grids.RadialGrid1D` (radial flow to a well), becomes
an :class:`MOLSystem`: the in-place right-hand side ``f(t, y, p, dydt)`` in the
library's convention, ``y0``, ``p``, and the CSR patterns of ``df/dy`` and
``df/dp`` (both tridiagonal). :meth:`MOLSystem.to_problem` hands these to
``ODEProblem(f, y0, t_span, p, jac_sparsity=..., param_sparsity=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sensitivity.pde.boundary import BC, Dirichlet
from sensitivity.pde.operators import _bc_array, flux_divergence_pattern, fv_flux_divergence


@dataclass(frozen=True)
class MOLSystem:
    """A semi-discrete PDE ``y' = f(t, y, p)`` with its Jacobian sparsity.

    Attributes
    ----------
    f : callable
        ``f(t, y, p, dydt)``, in place, numba-compilable (it calls compiled
        kernels with arrays bound at construction).
    f_py : callable
        The same in plain Python (for ``compile=False`` and numpy-level duals).
    y0 : ndarray, shape (n,)
    p : ndarray, shape (m,)
    t_span : tuple of float
    jac_sparsity : scipy.sparse.csr_matrix, shape (n, n)
    param_sparsity : scipy.sparse.csr_matrix, shape (n, m)
    """

    f: object
    f_py: object
    y0: np.ndarray
    p: np.ndarray
    t_span: tuple
    jac_sparsity: sp.csr_matrix
    param_sparsity: sp.csr_matrix

    def rhs(self, t, y, p=None):
        """``f(t, y, p)`` as a new array (plain Python)."""
        out = np.empty(len(self.y0), dtype=np.result_type(y, self.p if p is None else p))
        self.f_py(t, np.asarray(y), self.p if p is None else np.asarray(p), out)
        return out

    def to_problem(self, compile=True):
        """An ``ODEProblem`` with the patterns (needs :mod:`sensitivity.ode.problem`)."""
        try:
            from sensitivity.ode.problem import ODEProblem
        except ImportError as e:  # the ODE package lands separately (branch nb)
            raise ImportError(
                "MOLSystem.to_problem needs sensitivity.ode.problem.ODEProblem, which is "
                f"not available in this installation ({e}); use .f, .y0, .p and the "
                "patterns directly"
            ) from None
        return ODEProblem(self.f if compile else self.f_py, self.y0, self.t_span, self.p,
                          jac_sparsity=self.jac_sparsity, param_sparsity=self.param_sparsity,
                          compile=compile)  # fmt: skip


def diffusion_system(grid, k, u0, t_span, left=None, right=None, capacity=None):
    """``capacity du/dt = div(k grad u)`` on a 1-D grid, parameters ``p = k``.

    Parameters
    ----------
    grid : Grid1D or RadialGrid1D
    k : array_like, shape (n,)
        Conductivity (transmissivity, diffusivity) per cell: the parameters.
    u0 : array_like, shape (n,)
    t_span : (float, float)
    left, right : BC, optional
        Default ``Dirichlet(0)`` at both ends.
    capacity : array_like, shape (n,), optional
        Storage per cell (storativity); default 1.

    Returns
    -------
    MOLSystem
    """
    n = grid.n
    k = _positive(k, n, "k")
    u0 = np.asarray(u0, dtype=float)
    if u0.shape != (n,) or not np.all(np.isfinite(u0)):
        raise ValueError(f"u0 must be a finite array of shape ({n},), got shape {u0.shape}")
    cap = np.ones(n) if capacity is None else _positive(capacity, n, "capacity")
    left = Dirichlet(0.0) if left is None else left
    right = Dirichlet(0.0) if right is None else right
    if not (isinstance(left, BC) and isinstance(right, BC)):
        raise TypeError("left and right must be BC objects (Dirichlet, Neumann, Flux)")
    bc = _bc_array(left, right)
    vol = grid.volume * cap  # capacity folds into the cell volume
    lo, hi, area = grid.res_lo, grid.res_hi, grid.area
    # under NUMBA_DISABLE_JIT the kernel is already a plain function (no .py_func)
    kernel = fv_flux_divergence
    kernel_py = getattr(kernel, "py_func", kernel)

    def f(t, y, p, dydt):
        kernel(y, p, vol, lo, hi, area, bc, dydt)

    def f_py(t, y, p, dydt):
        kernel_py(y, p, vol, lo, hi, area, bc, dydt)

    P = flux_divergence_pattern(n)
    return MOLSystem(f, f_py, u0, k, (float(t_span[0]), float(t_span[1])), P, P.copy())


def _positive(x, n, name):
    a = np.asarray(x, dtype=float)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    if not np.all(np.isfinite(a) & (a > 0)):
        raise ValueError(f"{name} must be finite and positive")
    return a
