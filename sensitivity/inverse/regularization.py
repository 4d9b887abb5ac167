"""Regularisation terms for ill-posed inversions, and the L-curve.

Both terms are objectives in residual form (so they stack under
``least_squares`` as well as add under ``minimize``), on a parameter field of
a 1-D or 2-D grid:

* :class:`Tikhonov`: ``weight/2 * ||L_k (m - m_ref)||^2`` with ``L_0 = I``,
  ``L_1`` the first differences / h and ``L_2`` the second differences / h^2
  along each grid axis;
* :class:`SmoothedTV`: ``weight * sum_i sqrt(|grad m|_i^2 + eps^2)`` (forward
  differences), residuals ``sqrt(2 weight) (|grad m|_i^2 + eps^2)^(1/4)``.

:func:`l_curve` sweeps the weight and locates the corner of maximum curvature
of (log misfit, log model norm) (Hansen, "Analysis of discrete ill-posed
problems by means of the L-curve", SIAM Review 34, 1992).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sensitivity.inverse.objective import AbstractObjective, Evaluation

# Above this many Jacobian entries the terms hand out a sparse matrix wrapped
# as a LinearOperator instead of a dense array.
DENSE_LIMIT = 4_000_000


def difference_operator(n, order, h=1.0):
    """Return the 1-D difference matrix of ``order`` (0, 1, 2), sparse CSR.

    Shapes: (n, n), (n - 1, n) and (n - 2, n); scaled by h**-order.
    """
    if order == 0:
        return sp.identity(n, format="csr")
    if order == 1:
        return sp.diags([-1.0, 1.0], [0, 1], shape=(n - 1, n), format="csr") / h
    if order == 2:
        return sp.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(n - 2, n), format="csr") / h**2
    raise ValueError(f"order must be 0, 1 or 2, got {order!r}")


def grid_operators(shape, order, spacing=1.0):
    """Difference operators along each axis of a C-ordered grid, each (rows, prod(shape))."""
    shape = _shape(shape)
    h = np.broadcast_to(np.asarray(spacing, dtype=float), (len(shape),))
    if order == 0:
        return [sp.identity(int(np.prod(shape)), format="csr")]
    ops = []
    for axis, n in enumerate(shape):
        eyes = [sp.identity(m, format="csr") for m in shape]
        eyes[axis] = difference_operator(n, order, h[axis])
        op = eyes[0]
        for e in eyes[1:]:
            op = sp.kron(op, e, format="csr")
        ops.append(op)
    return ops


def _shape(shape):
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    if len(shape) not in (1, 2) or min(shape) < 1:
        raise ValueError(f"shape must be a 1-D or 2-D grid shape, got {shape}")
    return shape


class _GridTerm(AbstractObjective):
    """Common set-up: a field of prod(shape) cells read from theta[indices]."""

    has_residuals = True
    n_data = 0

    def __init__(self, shape, weight, indices, n_params, name):
        self.shape = _shape(shape)
        size = int(np.prod(self.shape))
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"weight must be finite and non-negative, got {weight!r}")
        self.weight = float(weight)
        self.indices = np.arange(size) if indices is None else np.asarray(indices)
        if self.indices.shape != (size,):
            raise ValueError(
                f"indices must hold {size} entries (one per cell), got {self.indices.shape}"
            )
        self.n_params = size if n_params is None else int(n_params)
        if self.indices.max() >= self.n_params:
            raise ValueError(f"indices must lie below n_params={self.n_params}")
        self.P = sp.csr_matrix(
            (np.ones(size), (np.arange(size), self.indices)), shape=(size, self.n_params)
        )
        self.name = name

    def _jac_out(self, J):
        J = sp.csr_matrix(J @ self.P)
        if J.shape[0] * J.shape[1] <= DENSE_LIMIT:
            return J.toarray()
        from scipy.sparse.linalg import aslinearoperator

        return aslinearoperator(J)


class Tikhonov(_GridTerm):
    """Tikhonov regularisation ``weight/2 * ||L_order (m - reference)||^2``.

    Parameters
    ----------
    shape : int or (int, int)
        Grid of the parameter field.
    order : {0, 1, 2}
        Smallness, flatness (first differences) or smoothness (second).
    weight : float
        Regularisation weight (>= 0).
    reference : ndarray, shape (prod(shape),), optional
        Reference model (zeros by default).
    spacing : float or (float, float)
        Grid spacing h per axis (the differences are divided by h**order).
    indices : ndarray of int, optional
        Where the field sits in theta (default: theta is the field).
    n_params : int, optional
        Length of theta (default prod(shape)).
    """

    def __init__(
        self, shape, order=1, weight=1.0, reference=None, spacing=1.0, indices=None, n_params=None
    ):
        super().__init__(shape, weight, indices, n_params, f"tikhonov{order}")
        self.order = order
        self.L = sp.vstack(grid_operators(self.shape, order, spacing), format="csr")
        size = self.P.shape[0]
        self.reference = np.zeros(size) if reference is None else np.asarray(reference, float)
        if self.reference.shape != (size,):
            raise ValueError(f"reference must have shape ({size},), got {self.reference.shape}")

    def _evaluate(self, theta, need):
        s = np.sqrt(self.weight)
        r = s * (self.L @ (self.P @ theta - self.reference))
        out = Evaluation(value=0.5 * float(r @ r), residuals=r)
        if need & {"grad", "rjac"}:
            out.grad = s * (self.P.T @ (self.L.T @ r))
            out.rjac = self._jac_out(s * self.L)
        return out

    def _hessp(self, theta, u):
        return self.weight * (self.P.T @ (self.L.T @ (self.L @ (self.P @ u))))


class SmoothedTV(_GridTerm):
    """Smoothed total variation ``weight * sum_i sqrt(|grad m|_i^2 + eps^2)``.

    Parameters
    ----------
    shape : int or (int, int)
    weight : float
    eps : float
        Smoothing (> 0), in units of the gradient; below it TV acts like
        Tikhonov-1, above it like the gradient's magnitude.
    spacing, indices, n_params
        As for :class:`Tikhonov`.
    """

    def __init__(self, shape, weight=1.0, eps=1e-2, spacing=1.0, indices=None, n_params=None):
        super().__init__(shape, weight, indices, n_params, "tv")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.eps = float(eps)
        # forward differences, cropped to the cells where every axis has one
        ops = grid_operators(self.shape, 1, spacing)
        if len(self.shape) == 2:
            ny, nx = self.shape
            keep_y = np.arange((ny - 1) * nx).reshape(ny - 1, nx)[:, : nx - 1].ravel()
            keep_x = np.arange(ny * (nx - 1)).reshape(ny, nx - 1)[: ny - 1, :].ravel()
            ops = [ops[0][keep_y], ops[1][keep_x]]
        self.D = ops

    def _evaluate(self, theta, need):
        m = self.P @ theta
        grads = [D @ m for D in self.D]
        q = sum(g * g for g in grads) + self.eps**2
        c = np.sqrt(2.0 * self.weight)
        r = c * q**0.25
        out = Evaluation(value=self.weight * float(np.sum(np.sqrt(q))), residuals=r)
        if need & {"grad", "rjac"}:
            # dr/dm = c/4 q^(-3/4) * 2 sum_a diag(D_a m) D_a
            scale = 0.5 * c * q**-0.75
            J = sum(sp.diags(scale * g) @ D for g, D in zip(grads, self.D))
            out.grad = self.P.T @ (J.T @ r)
            out.rjac = self._jac_out(J)
        return out


@dataclass(frozen=True)
class LCurve:
    """Result of :func:`l_curve`.

    Attributes
    ----------
    weights : ndarray, shape (k,)
    misfit : ndarray, shape (k,)
        Data term at each fit.
    norm : ndarray, shape (k,)
        Regularisation term / weight at each fit.
    corner : int
        Index of the maximum-curvature weight.
    results : list of FitResult
    """

    weights: np.ndarray
    misfit: np.ndarray
    norm: np.ndarray
    corner: int
    results: list


def l_curve(data, make_regularization, weights, x0, **fit_kwargs):
    """Fit for each weight and locate the L-curve corner.

    Parameters
    ----------
    data : AbstractObjective
        The data misfit.
    make_regularization : callable
        ``make_regularization(weight) -> AbstractObjective``.
    weights : array_like, shape (k,), k >= 3
        Weights to try (sorted increasingly).
    x0 : ndarray
        Starting point of every fit (optimiser variables).
    **fit_kwargs
        Passed to :func:`sensitivity.inverse.fit.fit`.

    Returns
    -------
    LCurve
    """
    from sensitivity.inverse.fit import fit  # fit imports this module's siblings only

    weights = np.sort(np.asarray(weights, dtype=float))
    if weights.size < 3 or np.any(weights <= 0):
        raise ValueError("weights: need at least 3 positive values")
    results, misfit, norm = [], [], []
    for w in weights:
        reg = make_regularization(w)
        res = fit(data + reg, x0, progress=False, **fit_kwargs)
        theta = res.x
        misfit.append(data.evaluate(theta, {"value"}).value)
        norm.append(reg.evaluate(theta, {"value"}).value / w)
        results.append(res)
    a, b = np.log(np.asarray(misfit)), np.log(np.asarray(norm))
    t = np.log(weights)
    da, db = np.gradient(a, t), np.gradient(b, t)
    dda, ddb = np.gradient(da, t), np.gradient(db, t)
    kappa = (da * ddb - db * dda) / np.maximum((da * da + db * db) ** 1.5, 1e-300)
    corner = int(np.argmax(np.abs(kappa[1:-1])) + 1)
    return LCurve(weights, np.asarray(misfit), np.asarray(norm), corner, results)
