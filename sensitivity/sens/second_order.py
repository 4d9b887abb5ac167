"""Exact Hessian-vector products of ODE objectives by second-order forward sensitivities.

For k unknowns theta (parameters and/or initial values) and a direction v (k,), the
augmented state carries, besides y (n,),

    S = dy/dtheta (n, k),     w = S v (n,),     C = (dS/dtheta) v (n, k),

whose equations come from one evaluation of the user's f on the second-order duals of
:mod:`sensitivity.ad.nb_dual2` (y = (y + S eps) + (w + C eps) delta and
p = (p + E eps) + (v_p) delta, E the parameter seeds):

    S' = f_y S + f_p E,
    w' = f_y w + f_p v_p,
    C' = f_y C + f_yy[w, S] + f_yp[w, E] + f_py[v_p, S] + f_pp[v_p, E].

The objective's Hessian along v then follows from the observations: for a least-squares
term with residuals r_i = sqrt(w_i) (h(t_i, y_i, p) - d_i) and R_i = dr_i/dtheta,

    H v = sum_i R_i^T (R_i v) + (d R_i / d theta . v)^T r_i,

and for a point term g, ``H v = sum_i d/d delta of dg_i/dtheta``, both from one
second-order evaluation of h or g per observation. For explicit Runge-Kutta methods this is
the exact Hessian of the computed solution with the step sizes held fixed (the stages of
(S, w, C) are the derivatives of the stages of y); BDF and ESDIRK carry (S, w, C) through
their staggered corrector as they carry S. The cost is one augmented solve of size
n (2 k + 2), so it suits problems with tens of unknowns (``minimize(method="trust-ncg")``,
``"Newton-CG"``, ``"trust-krylov"``); a field of thousands of unknowns needs
forward-over-adjoint, which this module does not build.

The state is stored as the forward sensitivities are, ``Y = [y (n), X (n, 2k+1)]`` with
``X = [S | w | C]`` row-major, so that the implicit methods' corrector, which solves
column by column with the Newton matrix, applies unchanged; parameters likewise
``P = [p (m), [E | v_p | 0] (m, 2k+1)]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np

from sensitivity.ad import nb
from sensitivity.ad.nb_dual2_array import dual2_array_k
from sensitivity.ode import solve as ode_solve
from sensitivity.sens import forward, templates
from sensitivity.sens.dual2_kernels import _tags, second_order_kernel
from sensitivity.sens.forward_kernels import view2d
from sensitivity.sens.objectives import L2Misfit, PointObjective

MAX_UNKNOWNS = 64  # k at most: the augmented state has n (2 k + 2) components

# template globals, bound per kernel (declared for linters; never used here)
rhs = None
K = 0
TAG = 0
TAG2 = 0


def _columns(X, K, S, w, C):
    # split X (n, 2K+1) = [S | w | C] into contiguous S, w, C (the duals need rows of K)
    for i in range(X.shape[0]):
        for j in range(K):
            S[i, j] = X[i, j]
            C[i, j] = X[i, K + 1 + j]
        w[i] = X[i, K]


_columns_jit = numba.njit(cache=True)(_columns)


def _hess_rhs(t, Y, P, dY):
    # dY = [f, [f_y S + f_p E | f_y w + f_p v | d/ddelta (f_y S + f_p E) + f_y C]]
    W2 = 2 * K + 1
    n = Y.shape[0] // (W2 + 1)
    m = P.shape[0] // (W2 + 1)
    # one scratch block (an allocation costs about as much as f on a small system):
    # S, C, G, dG (n, K); E, Z (m, K); w, fd (n); v (m)
    nK, mK = n * K, m * K
    buf = np.empty(4 * nK + 2 * mK + 2 * n + m)
    S, C = view2d(buf, 0, n, K), view2d(buf, nK, n, K)
    G, dG = view2d(buf, 2 * nK, n, K), view2d(buf, 3 * nK, n, K)
    o = 4 * nK
    E, Z = view2d(buf, o, m, K), view2d(buf, o + mK, m, K)
    o += 2 * mK
    w, fd, v = buf[o : o + n], buf[o + n : o + 2 * n], buf[o + 2 * n : o + 2 * n + m]
    _columns(view2d(Y, n, n, W2), K, S, w, C)
    _columns(view2d(P, m, m, W2), K, E, v, Z)
    yd = dual2_array_k(Y[:n], S, w, C, TAG, TAG2, K)
    pd = dual2_array_k(P[:m], E, v, Z, TAG, TAG2, K)
    out = dual2_array_k(dY[:n], G, fd, dG, TAG, TAG2, K)
    rhs(t, yd, pd, out)
    dX = view2d(dY, n, n, W2)
    for i in range(n):
        for j in range(K):
            dX[i, j] = G[i, j]
            dX[i, K + 1 + j] = dG[i, j]
        dX[i, K] = fd[i]


@lru_cache(maxsize=256)
def hess_rhs(f, K2, compile=True):
    """The right-hand side of the second-order system for ``f``, with ``K2 = 2 k + 1``
    columns in X (the factory signature of :func:`sensitivity.sens.forward_kernels.sens_rhs`).

    Returns
    -------
    callable
        ``hess_rhs(t, Y (n (K2 + 1),), P (m (K2 + 1),), dY (n (K2 + 1),))``.
    """
    tag, tag2 = _tags(compile)
    jit = tag == 0
    return templates.build(
        _hess_rhs, f, (K2 - 1) // 2, compile, "hess_rhs", TAG=tag, TAG2=tag2,
        dual2_array_k=dual2_array_k, view2d=view2d if jit else _view2d_py,
        _columns=_columns_jit if jit else _columns,
    )  # fmt: skip


def _view2d_py(a, start, rows, cols):
    return a[start : start + rows * cols].reshape((rows, cols))


class _Chunk(forward._Chunk):
    """The augmented solve, with the step-size control of the first-order one.

    Explicit methods: w and C stay out of the error norm and y, S keep the weight they
    have in the forward sensitivities' norm (which runs over half as many components), so
    the steps are those of the gradient's sensitivity solve and H v is the exact
    derivative of that computed gradient. Implicit methods need real scales for every
    column in their corrector; their steps follow y alone. ``method="auto"`` controls all
    columns (it may switch to BDF during the run).
    """

    def __init__(self, owner, cols):
        self.k, self.priced = len(cols), False
        super().__init__(owner, cols)
        # (method="auto" may switch to BDF mid-run: real scales everywhere then)
        self.priced = not self.implicit and not owner.base.auto
        if self.priced:
            self.tol[: 1 + self.n] *= _NORM
            self.tol[1 + self.n :] = (self.atol_y[:, None] / self._scale(owner.base.p)).ravel()
        elif self.implicit:
            self._implicit_args[2]["n_err"] = self.n

    def _scale(self, p):
        scale = super()._scale(p)
        if self.priced:
            scale[: self.k] /= _NORM
            scale[self.k :] = _OUT
        return scale


_NORM = np.sqrt(0.5)  # (k + 1) / (2 k + 2) components: the RMS norms agree with this factor
_OUT = 1e-300  # column scale that takes a component out of the error norm (atol / 1e-300)


@dataclass
class SecondOrder:
    """Solution of the second-order system at the output times.

    Attributes
    ----------
    t : ndarray, shape (nt,)
    y : ndarray, shape (nt, n)
    S : ndarray, shape (nt, n, k)
        dy/dtheta.
    w : ndarray, shape (nt, n)
        S v.
    C : ndarray, shape (nt, n, k)
        (dS/dtheta) v.
    success : bool
    message : str
    """

    t: np.ndarray
    y: np.ndarray
    S: np.ndarray
    w: np.ndarray
    C: np.ndarray
    success: bool
    message: str


class HessianVectorSolver:
    """y, S, S v and (dS/dtheta) v at ``t_eval``, for repeated directions v.

    Parameters
    ----------
    prob : ODEProblem
    t_eval : ndarray, shape (nt,)
    params : ndarray of int
        Parameters in theta.
    y0_idx : ndarray of int
        Initial values in theta (after the parameters).
    method, rtol, atol, error_control
        As :func:`sensitivity.forward_sensitivity` (explicit methods, BDF, ESDIRK).
    """

    kernel = staticmethod(hess_rhs)  # what the augmented chunk compiles

    def __init__(self, prob, t_eval, params, y0_idx, method="auto", rtol=1e-6, atol=1e-8,
                 error_control="full"):  # fmt: skip
        self.prob, self.error_control = prob, error_control
        self.params, self.y0_idx = np.asarray(params, int), np.asarray(y0_idx, int)
        self.k = k = self.params.size + self.y0_idx.size
        if not 1 <= k <= MAX_UNKNOWNS:
            raise ValueError(
                f"exact Hessian products carry 2 k + 1 sensitivity columns: k (unknowns) must "
                f"lie in [1, {MAX_UNKNOWNS}], got {k}; use kind='gauss-newton' for more"
            )
        self.base = ode_solve.Solver(prob, method, t_eval, rtol, atol)
        meth = self.base.method
        if getattr(meth, "stiff", False) and not forward._implicit(meth):
            raise ValueError(
                f"exact Hessian products run through the explicit methods, BDF and ESDIRK; "
                f"got {method!r}"
            )
        self.K, self.y0_dp, self.t_span_dp = 2 * k + 1, None, None
        cols = list(self.params) + [prob.m + j for j in self.y0_idx]
        self.chunk = _Chunk(self, cols)  # columns k ... 2k: the zero padding, seeded per v

    def __call__(self, p, y0, v):
        """Solve for parameters ``p`` (m,), initial values ``y0`` (n,) and direction ``v`` (k,)."""
        n, m, k, K2 = self.prob.n, self.prob.m, self.k, self.K
        ch = self.chunk
        vp = np.zeros(m)
        vp[self.params] = v[: self.params.size]
        ch.P[m:].reshape(m, K2)[:, k] = vp
        w0 = ch.S0[:, :k] @ v
        ch.Y0[n:].reshape(n, K2)[:, k] = w0
        sol = ch.run(np.ascontiguousarray(p, dtype=np.float64), np.asarray(y0, np.float64), None)
        X = sol.y[:, n:].reshape(-1, n, K2)
        return SecondOrder(
            sol.t, sol.y[:, :n], X[:, :, :k], X[:, :, k], X[:, :, k + 1 :], sol.success,
            sol.message,
        )  # fmt: skip


# ---- the objective terms' second derivatives ----------------------------------------------


def _as_vector(t, y, p, out):
    out[0] = rhs(t, y, p)


@lru_cache(maxsize=256)
def vector_form(g, compile=True):
    """``g(t, y, p) -> float`` as ``h(t, y, p, out)`` with ``out`` (1,): the signature the
    second-order kernels take."""
    gf = nb.compile_rhs(g) if compile else nb._py_func(g)
    return templates.build(_as_vector, gf, 1, compile, "as_vector")


def _second_derivatives(h, n_out, t_obs, Y, S, w, C, p, E, vp, compile):
    """``(h, h_theta = h_y S + h_p E, h_theta v, d(h_theta)/dtheta v)`` at every observation:
    shapes (nt, n_out), (nt, n_out, k), (nt, n_out), (nt, n_out, k)."""
    nt, k = S.shape[0], S.shape[2]
    kern = second_order_kernel(h, k, compile, True)
    H, G = np.empty((nt, n_out)), np.empty((nt, n_out, k))
    Hv, dG = np.empty((nt, n_out)), np.empty((nt, n_out, k))
    Z = np.zeros((p.size, k))
    for i in range(nt):
        kern(
            float(t_obs[i]), np.ascontiguousarray(Y[i]), p, np.ascontiguousarray(S[i]), E,
            np.ascontiguousarray(w[i]), vp, np.ascontiguousarray(C[i]), Z, H[i], G[i], Hv[i],
            dG[i],
        )  # fmt: skip
    return H, G, Hv, dG


def term_hvp(term, Y, S, w, C, p, E, vp, compile=True):
    """The Hessian-vector product of one objective term, shape (k,).

    Parameters
    ----------
    term : L2Misfit or PointObjective
        Bound to the problem.
    Y, S, w, C : ndarray
        The term's rows of :class:`SecondOrder` (nt, n), (nt, n, k), (nt, n), (nt, n, k).
    p : ndarray, shape (m,)
    E : ndarray, shape (m, k)
        Parameter seeds of theta's columns.
    vp : ndarray, shape (m,)
        The direction's parameter part, ``E v``.
    compile : bool
        The problem's ``compile`` (observation functions on compiled or numpy duals).
    """
    if isinstance(term, L2Misfit):
        if term.index is not None:  # a component selection: linear in y, free of p
            G, Hv, dG = S[:, term.index, :], w[:, term.index], C[:, term.index, :]
            r = term.sqrt_w * (Y[:, term.index] - term.data)
        else:
            H, G, Hv, dG = _second_derivatives(
                term._h, term.data.shape[1], term.t_obs, Y, S, w, C, p, E, vp, compile
            )
            r = term.sqrt_w * (H - term.data)
        sw = term.sqrt_w
        # R^T (R v) + (dR v)^T r with R = sqrt(w) G, R v = sqrt(w) Hv, dR v = sqrt(w) dG
        return np.einsum("iok,io->k", G, sw * sw * Hv) + np.einsum("iok,io->k", dG, sw * r)
    if isinstance(term, PointObjective):
        _, _, _, dG = _second_derivatives(
            vector_form(term.g, compile), 1, term.t_obs, Y, S, w, C, p, E, vp, compile
        )
        return dG.sum(axis=(0, 1))
    raise TypeError(
        f"exact Hessian products are built for L2Misfit and PointObjective terms, "
        f"not {type(term).__name__}"
    )
