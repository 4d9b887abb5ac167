"""Discrete adjoint of the variable-order BDF (NDF) solution, steps and orders held fixed.

The forward solve (:mod:`sensitivity.ode.bdf`) advances the backward differences D
(rows ``0 ... k+1``, scaled by h). Accepted step n+1 of order k and size h does

    E = R(k, rho)^T D            rescale to h (rho = h_{n+1} / h_n; rescales between
                                 accepted steps compose into one, in exact arithmetic)
    y_pred = sum_{j<=k} E_j,     psi = sum_{j=1..k} gamma_j E_j / alpha_k,
    d - c f(t_{n+1}, y_pred + d, p) + psi = 0,        c = h / alpha_k,
    D'_j = sum_{i=j..k} E_i + d  (j <= k),  D'_{k+1} = d,   y_{n+1} = D'_0,

from ``D = [y0, h_1 f(t0, y0, p)]``, and observations read the dense output
``y(t_{n+1} + s h) = sum_j w_j(s) D'_j``. Its transpose, last step first, is

    dbar = Dbar_{k+1} + sum_{j<=k} Dbar_j,    Ebar_i = sum_{j<=i} Dbar_j,
    (I - c J)^T w = dbar,   J = f_y(t_{n+1}, y_{n+1}),
    Ebar_j += c J^T w  (j <= k),   Ebar_j -= gamma_j / alpha_k w  (1 <= j <= k),
    pbar += c f_p^T w,      Dbar = R(k, rho) Ebar,

which is the gradient of the BDF solution with the corrector equations solved exactly
and the step sizes and orders those of the forward solve (the derivative of the
computed solution up to the Newton tolerance). The step orders are read from the dense
output (``Q[:, j] = 0`` for ``j >= k``). One Jacobian, one LU of ``I - c J^T`` and one
``f_p^T w`` per step: banded or sparse LU and the coloured sparse Jacobians for large
problems with a pattern, dense otherwise.

References
----------
.. [1] L. F. Shampine, M. W. Reichelt, "The MATLAB ODE suite", SIAM J. Sci. Comput. 18
   (1997) 1-22 (the NDF formulation in differences).
.. [2] H. Zhang, A. Sandu, "FATODE: a library for forward, adjoint, and tangent linear
   integration of ODEs", SIAM J. Sci. Comput. 36 (2014) C504-C523 (discrete adjoints of
   implicit methods with converged stage equations).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg.lapack import dgbtrf, dgbtrs
from scipy.sparse.linalg import splu

from sensitivity.ode import linsolve
from sensitivity.ode.bdf import ALPHA, DENSE_COEF, GAMMA, MAX_ORDER, U_TABLE, compute_R
from sensitivity.sens import bdf_adjoint_kernel

_R = getattr(compute_R, "py_func", compute_R)


def step_orders(seg_Q):
    """Order of every BDF step from its dense output (N, n, q): 1 + last non-zero column.

    A step of order k whose k-th difference vanishes in every component (a solution
    that is a polynomial of lower degree in t) would read as a lower order.
    """
    nz = np.any(seg_Q != 0.0, axis=1)  # (N, q)
    last = np.where(nz.any(axis=1), nz.shape[1] - 1 - np.argmax(nz[:, ::-1], axis=1), 0)
    return (last + 1).astype(np.int64)


def rescale_matrix(k, rho):
    """``RU`` of :func:`sensitivity.ode.bdf.change_D`: ``E_j = sum_m RU[m, j] D_m``."""
    R = _R(k, rho, np.empty((k + 1, k + 1)))
    return R @ U_TABLE[k, : k + 1, : k + 1]


def dense_weights(s, k):
    """``w_j(s)``, j = 0 ... k, with ``y(t_new + s h) = sum_j w_j D'_j``."""
    w = np.zeros(k + 1)
    w[0] = 1.0
    powers = s ** np.arange(1, MAX_ORDER + 1)
    for j in range(1, k + 1):
        w[j] = DENSE_COEF[j, :j] @ powers[:j]
    return w


def locate(t_obs, seg_t):
    """Step of each observation (-1: at t0) and its s in [-1, 0] (anchor at the step end)."""
    forward = seg_t[-1] >= seg_t[0]
    key, tk = (seg_t, t_obs) if forward else (-seg_t, -t_obs)
    step = np.minimum(np.searchsorted(key, tk, side="left") - 1, seg_t.size - 2)
    step[t_obs == seg_t[0]] = -1
    k = np.maximum(step, 0)
    s = (t_obs - seg_t[k + 1]) / (seg_t[k + 1] - seg_t[k])
    return step, s


class _Linear:
    """Jacobians, ``(I - c J)^T`` solves and ``f_p^T w`` at the steps, dense or sparse.

    With a pattern, values are gathered straight into preallocated arrays (no scipy matrix
    per step), ``J^T w`` is a scatter-add, the band or sparse LU of ``I - c J^T`` is
    rebuilt only when c or J changed (a linear problem keeps one per step size).
    """

    def __init__(self, prob, p):
        self.prob, self.p, n = prob, p, prob.n
        self.sparse = prob.jac_sparsity is not None
        self._key = None
        if self.sparse:
            S = prob.jac_sparsity
            self.rows = np.repeat(np.arange(n), np.diff(S.indptr))
            self.cols = S.indices.astype(np.int64)
            self.data = np.zeros(S.nnz)
            self.banded = linsolve.choose(S) is linsolve.BANDED
            # J^T has J[r, c] at (c, r): its lower bandwidth is J's upper one
            self.kl = int(max((self.cols - self.rows).max(initial=0), 0))
            self.ku = int(max((self.rows - self.cols).max(initial=0), 0))
        if prob.param_sparsity is not None:
            P = prob.param_sparsity
            self.p_rows = np.repeat(np.arange(n), np.diff(P.indptr))
            self.p_cols = P.indices.astype(np.int64)
            self.p_data = np.zeros(P.nnz)

    def jacobian(self, t, y):
        """Evaluate J at (t, y): the sparse values, or the dense matrix."""
        if self.sparse:
            return self.prob.jacobian_values(t, y, out=self.data, p=self.p)
        return self.prob.jacobian(t, y, self.p)

    def jt_vec(self, J, w):
        """``J^T w``."""
        if self.sparse:
            return np.bincount(self.cols, J * w[self.rows], minlength=w.size)
        return J.T @ w

    def solve_transposed(self, J, c, b):
        """Solve ``(I - c J)^T x = b``."""
        return self._solve(J, c, b, 0)

    def solve(self, J, c, b):
        """Solve ``(I - c J) x = b`` with the same factors (a checkpoint replay's Newton)."""
        return self._solve(J, c, b, 1)

    def _solve(self, J, c, b, trans):
        # the factors are those of I - c J^T; trans=1 solves with their transpose
        key = (c, J.tobytes())
        if key != self._key:
            self._key, self._lu = key, self._factor(J, c)
        if not self.sparse:
            return sla.lu_solve(self._lu, b, trans=trans, check_finite=False)
        if self.banded:
            lu, ipiv = self._lu
            return dgbtrs(lu, self.kl, self.ku, b, ipiv, trans=trans)[0]
        return self._lu.solve(b, trans="T" if trans else "N")

    def _factor(self, J, c):
        n = self.prob.n
        if not self.sparse:
            return sla.lu_factor(np.eye(n) - c * J.T, check_finite=False)
        if self.banded:  # LAPACK band storage of I - c J^T
            kl, ku = self.kl, self.ku
            ab = np.zeros((2 * kl + ku + 1, n))
            ab[kl + ku + self.cols - self.rows, self.rows] = -c * J
            ab[kl + ku] += 1.0
            lu, ipiv, _ = dgbtrf(ab, kl, ku, overwrite_ab=True)
            return lu, ipiv
        A = sp.csc_matrix((-c * J, (self.cols, self.rows)), shape=(n, n)) + sp.identity(n)
        return splu(A.tocsc())

    def param_vjp(self, t, y, w):
        """``f_p(t, y)^T w``."""
        prob = self.prob
        if prob.m == 0:
            return np.zeros(0)
        if prob.param_sparsity is not None:
            vals = prob._sparse_values(
                t,
                y,
                self.p,
                prob.param_sparsity,
                prob.param_colors,
                "sparse_param_jac",
                self.p_data,
            )
            return np.bincount(self.p_cols, vals * w[self.p_rows], minlength=prob.m)
        return prob.param_jacobian(t, y, self.p).T @ w


def _compiled_sweep(prob, sol, orders, step, s, obs_g, p, y0):
    """:func:`bdf_adjoint` by the compiled kernel of :mod:`.bdf_adjoint_kernel`."""
    seg_t, seg_h, seg_y = sol.segments[:3]
    W = (s[:, None] ** np.arange(1, MAX_ORDER + 1)) @ DENSE_COEF.T  # w_j(s), all j
    W[:, 0] = 1.0
    ybar = np.zeros(prob.n)
    sweep = bdf_adjoint_kernel.kernel(prob.rhs_kernel, prob.compile)
    Y = np.ascontiguousarray(seg_y)
    G = np.ascontiguousarray(obs_g)
    pbar = sweep(seg_t, seg_h, Y, orders, p, y0, step, W, G, ybar)
    return pbar, ybar + obs_g[step < 0].sum(axis=0)


def bdf_adjoint(prob, sol, t_obs, obs_g, p, y0):
    """Reverse sweep of a dense BDF solution.

    Parameters
    ----------
    prob : ODEProblem
    sol : Solution
        From a BDF solve with ``dense=True``.
    t_obs : ndarray, shape (nt,)
        Observation times (sorted along the integration).
    obs_g : ndarray, shape (nt, n)
        dG/dy at each observation.
    p : ndarray, shape (m,)
    y0 : ndarray, shape (n,)

    Returns
    -------
    grad_p : ndarray, shape (m,)
        The part through the solution (add the objective's explicit g_p).
    grad_y0 : ndarray, shape (n,)
    """
    seg_t, seg_h, seg_y, seg_Q, at_end = sol.segments
    if not at_end:
        raise ValueError("the BDF discrete adjoint needs a BDF solution (anchored at step ends)")
    orders = step_orders(seg_Q)
    step, s = locate(t_obs, seg_t)
    if not linsolve.sparse_lu(prob):  # small or dense: one compiled sweep
        return _compiled_sweep(prob, sol, orders, step, s, obs_g, p, y0)
    lin = _Linear(prob, p)
    Dbar = np.zeros((MAX_ORDER + 2, prob.n))
    pbar = np.zeros(prob.m)
    o = t_obs.size - 1
    for i in range(seg_h.size - 1, -1, -1):
        k = int(orders[i])
        while o >= 0 and step[o] == i:  # observations read from this step's interpolant
            Dbar[: k + 1] += np.outer(dense_weights(s[o], k), obs_g[o])
            o -= 1
        rho = seg_h[i] / seg_h[i - 1] if i > 0 else 1.0
        y_new = np.ascontiguousarray(seg_y[i])
        pbar += reverse_step(lin, Dbar, k, seg_h[i], rho, float(seg_t[i + 1]), y_new)
    ybar, gp = reverse_start(lin, Dbar, float(seg_t[0]), seg_h[0], y0)
    return pbar + gp, ybar + obs_g[: o + 1].sum(axis=0)


def reverse_step(lin, Dbar, k, h, rho, t_new, y_new):
    """Transpose one step of order k and size h (module docstring), in place on Dbar.

    Parameters
    ----------
    lin : _Linear
    Dbar : ndarray, shape (MAX_ORDER + 2, n)
        In: the adjoint of the step's updated differences (observations added).
        Out: that of the differences before it (rows above k zero).
    k : int
    h, rho : float
        Step size and its ratio to the previous step's (1 for the first step).
    t_new : float
    y_new : ndarray, shape (n,)
        The state at the step's end.

    Returns
    -------
    ndarray, shape (m,)
        The step's part of dG/dp.
    """
    dbar = Dbar[k + 1] + Dbar[: k + 1].sum(axis=0)
    Ebar = np.cumsum(Dbar[: k + 1], axis=0)
    c = h / ALPHA[k]
    J = lin.jacobian(t_new, y_new)
    w = lin.solve_transposed(J, c, dbar)
    Ebar += c * lin.jt_vec(J, w)
    Ebar[1:] -= np.outer(GAMMA[1 : k + 1] / ALPHA[k], w)
    gp = c * lin.param_vjp(t_new, y_new, w)
    Dbar[:] = 0.0
    Dbar[: k + 1] = rescale_matrix(k, rho) @ Ebar
    return gp


def reverse_start(lin, Dbar, t0, h1, y0):
    """Transpose of the start ``D = [y0, h_1 f(t0, y0, p)]``: return (dG/dy0, dG/dp part)."""
    J = lin.jacobian(t0, y0)
    ybar = Dbar[0] + h1 * lin.jt_vec(J, Dbar[1])
    return ybar, h1 * lin.param_vjp(t0, y0, Dbar[1])
