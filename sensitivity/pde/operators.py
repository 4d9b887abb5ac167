"""Finite-difference and finite-volume operators as compiled kernels, with sparsity.

Operators (``u`` the unknowns, ``k`` a conductivity per cell):

* :func:`flux_divergence`: ``div(k grad u)`` on a 1-D finite-volume grid,
  ``(F_{i+1/2} - F_{i-1/2}) / V_i`` with the face flows of
  :mod:`sensitivity.pde.grids` (distance-weighted harmonic mean of ``k``) and
  boundary conditions :mod:`sensitivity.pde.boundary` (a Neumann end takes
  ``k`` of its boundary cell: second-order only where ``k' = 0`` at that end,
  first order otherwise; Dirichlet and flux ends are second order). On a
  :class:`~sensitivity.pde.grids.RadialGrid1D` it is the cylindrical
  ``(1/r) d/dr (r k du/dr)``;
* :func:`gradient`: ``du/dx`` at the faces of a 1-D grid;
* :func:`laplacian`: ``u_xx`` (1-D) or ``u_xx + u_zz`` (2-D) on nodes, central
  differences of order 2 (``(1, -2, 1)/h^2``) or 4 (``(-1/12, 4/3, -5/2, 4/3,
  -1/12)/h^2``), with homogeneous Dirichlet boundaries one spacing beyond the
  first and last nodes (odd reflection supplies the 4th-order ghost node).

Each has a ``*_pattern`` function giving the sparsity of its Jacobian as a
``scipy.sparse`` CSR matrix of ones (with respect to ``u`` and, for the flux,
to ``k``), for sparse Jacobians and ``ODEProblem(jac_sparsity=...,
param_sparsity=...)``.

The kernels are generic numba functions (``cache=True``): they compile for
float64, complex128 (complex-step checks) and the library's dual numbers; each
also exists as plain Python (``kernel.py_func``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit

from sensitivity.pde.boundary import BC

# Coefficients (-2, 1) and (-5/2, 4/3, -1/12) of the 2nd- and 4th-order central
# second derivative, times h^2: index 0 is the centre, index d the +-d neighbours.
D2 = {2: (-2.0, 1.0, 0.0), 4: (-5.0 / 2.0, 4.0 / 3.0, -1.0 / 12.0)}


def _bc_array(left, right):
    for name, bc in (("left", left), ("right", right)):
        if not isinstance(bc, BC):
            raise TypeError(f"{name} must be a BC (Dirichlet, Neumann or Flux), got {bc!r}")
    return np.array([left.code, left.value, right.code, right.value], dtype=np.float64)


@njit(cache=True)
def fv_flux_divergence(u, k, vol, res_lo, res_hi, area, bc, out):
    """``out = (F_{i+1/2} - F_{i-1/2}) / vol_i`` with ``F = k A du/dx`` (flows).

    ``bc = [code_left, value_left, code_right, value_right]``, codes 0
    Dirichlet, 1 Neumann (``du/dn``, outward), 2 flux into the domain.
    """
    n = u.shape[0]
    for i in range(n):
        out[i] = 0.0 * u[i]
    for i in range(1, n):
        f = (u[i] - u[i - 1]) / (res_hi[i - 1] / k[i - 1] + res_lo[i] / k[i])
        out[i - 1] += f / vol[i - 1]
        out[i] -= f / vol[i]
    code = int(bc[0])
    if code == 0:
        f0 = (u[0] - bc[1]) / (res_lo[0] / k[0])
    elif code == 1:
        f0 = -bc[1] * area[0] * k[0]  # du/dn = -du/dx at the lower end
    else:
        f0 = -bc[1] + 0.0 * u[0]  # inflow q: F = -q
    out[0] -= f0 / vol[0]
    code = int(bc[2])
    if code == 0:
        fn = (bc[3] - u[n - 1]) / (res_hi[n - 1] / k[n - 1])
    elif code == 1:
        fn = bc[3] * area[n] * k[n - 1]
    else:
        fn = bc[3] + 0.0 * u[n - 1]
    out[n - 1] += fn / vol[n - 1]


def flux_divergence(u, k, grid, left, right):
    """``div(k grad u)`` per cell of a 1-D grid (Cartesian or radial).

    Parameters
    ----------
    u, k : ndarray, shape (n,)
    grid : Grid1D or RadialGrid1D
    left, right : BC
        At the lower and upper ends.

    Returns
    -------
    ndarray, shape (n,)
    """
    u, k = _vec(u, grid.n, "u"), _vec(k, grid.n, "k")
    out = np.empty(grid.n, dtype=np.result_type(u, k))
    fv_flux_divergence(u, k, grid.volume, grid.res_lo, grid.res_hi, grid.area,
                       _bc_array(left, right), out)  # fmt: skip
    return out


def flux_divergence_pattern(n):
    """Sparsity of d(flux_divergence)/du and /dk: tridiagonal, CSR (n, n)."""
    return sp.diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1], format="csr")


@njit(cache=True)
def fv_gradient(u, centres, faces, bc, out):
    """``out[f] = du/dx`` at the n + 1 faces (Dirichlet/Neumann ends)."""
    n = u.shape[0]
    for i in range(1, n):
        out[i] = (u[i] - u[i - 1]) / (centres[i] - centres[i - 1])
    if int(bc[0]) == 0:
        out[0] = (u[0] - bc[1]) / (centres[0] - faces[0])
    else:
        out[0] = -bc[1] + 0.0 * u[0]
    if int(bc[2]) == 0:
        out[n] = (bc[3] - u[n - 1]) / (faces[n] - centres[n - 1])
    else:
        out[n] = bc[3] + 0.0 * u[n - 1]


def gradient(u, grid, left, right):
    """``du/dx`` (or ``du/dr``) at the faces, shape (n + 1,).

    Only Dirichlet and Neumann ends (a prescribed flux fixes ``k du/dx``, not
    ``du/dx``).
    """
    if "flux" in (left.kind, right.kind):
        raise ValueError("gradient: Flux boundaries need k; use Neumann(q / k) instead")
    u = _vec(u, grid.n, "u")
    out = np.empty(grid.n + 1, dtype=u.dtype)
    fv_gradient(u, grid.centres, grid.faces, _bc_array(left, right), out)
    return out


def gradient_pattern(n, left=None, right=None):
    """Sparsity of d(gradient)/du: (n + 1, n) bidiagonal, CSR.

    A Neumann end's face value does not depend on ``u`` (its row is empty);
    ``None`` means Dirichlet.
    """
    lo = left is None or left.kind == "dirichlet"
    hi = right is None or right.kind == "dirichlet"
    rows = np.r_[[0] * lo, np.repeat(np.arange(1, n), 2), [n] * hi]
    cols = np.r_[[0] * lo, np.c_[np.arange(n - 1), np.arange(1, n)].ravel(), [n - 1] * hi]
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n + 1, n))


@njit(cache=True)
def _lap1(u, c0, c1, c2, ih2, out):
    n = u.shape[0]
    for i in range(n):
        s = c0 * u[i]
        for d, c in ((1, c1), (2, c2)):
            lo = u[i - d] if i - d >= 0 else (-u[-(i - d) - 2] if i - d <= -2 else 0.0 * u[i])
            hi = u[i + d] if i + d < n else (-u[2 * n - i - d] if i + d > n else 0.0 * u[i])
            s = s + c * (lo + hi)
        out[i] = s * ih2


@njit(cache=True)
def _lap2(u, c0, c1, c2, ihx2, ihz2, out):
    nx, nz = u.shape
    for i in range(nx):
        _lap1(u[i, :], c0, c1, c2, ihz2, out[i, :])
    tmp = np.empty(nx, dtype=out.dtype)
    for j in range(nz):
        _lap1(u[:, j].copy(), c0, c1, c2, ihx2, tmp)
        for i in range(nx):
            out[i, j] += tmp[i]


def laplacian(u, spacing, order=2):
    """Central-difference Laplacian of nodal values, zero one node beyond each end.

    Parameters
    ----------
    u : ndarray, shape (n,) or (nx, nz)
    spacing : float or tuple of float
    order : {2, 4}

    Returns
    -------
    ndarray, the shape of ``u``
    """
    if order not in D2:
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    u = np.asarray(u)
    c0, c1, c2 = D2[order]
    out = np.empty(u.shape, dtype=np.result_type(u, float))
    if u.ndim == 1:
        h = float(np.atleast_1d(spacing)[0])
        _lap1(u, c0, c1, c2, 1.0 / h**2, out)
    elif u.ndim == 2:
        hx, hz = spacing
        _lap2(u, c0, c1, c2, 1.0 / hx**2, 1.0 / hz**2, out)
    else:
        raise ValueError(f"laplacian: u must be 1-D or 2-D, got shape {u.shape}")
    return out


def laplacian_pattern(shape, order=2):
    """Sparsity of d(laplacian)/du, CSR (N, N) with N = prod(shape) (C order)."""
    half = order // 2
    shape = tuple(np.atleast_1d(shape))

    def band(n):
        return sp.diags([np.ones(n - abs(d)) for d in range(-half, half + 1)],
                        list(range(-half, half + 1)), shape=(n, n))  # fmt: skip

    if len(shape) == 1:
        return band(shape[0]).tocsr()
    nx, nz = shape
    P = sp.kron(band(nx), sp.eye(nz)) + sp.kron(sp.eye(nx), band(nz))
    P = P.tocsr()
    P.data[:] = 1.0
    return P


def _vec(x, n, name):
    a = np.asarray(x)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    if a.dtype.kind not in "fc":
        a = a.astype(float)
    return a
