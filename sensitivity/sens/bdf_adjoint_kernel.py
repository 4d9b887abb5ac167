"""Compiled reverse sweep of a dense BDF solution (the small, dense-Jacobian case).

The same transpose as :func:`sensitivity.sens.bdf_adjoint.bdf_adjoint` in one compiled
loop: per step, f_y and f_p at the step's end from ceil((n + m)/K) dual sweeps of f, the dense
LU of :mod:`sensitivity.ode.linsolve` of ``I - c J^T``, and the rescale matrices of
:func:`sensitivity.ode.bdf.change_D` built in place. Template globals (``rhs``, ``K``,
``dual_array_k``, ``empty_dual``, ``compute_R``, ``U_TABLE``, ``GAMMA``, ``ALPHA``,
``factor``, ``solve_lu``) are bound by :func:`kernel`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from sensitivity.ad import nb
from sensitivity.ode import bdf, linsolve
from sensitivity.sens import templates

# template globals, bound by kernel() (declared for linters; never used here)
rhs = None
K = 0
TAG = 0
dual_array_k = None
empty_dual = None
compute_R = None
U_TABLE = None
GAMMA = None
ALPHA = None
factor = None
solve_lu = None


def _bdf_adjoint(seg_t, seg_h, seg_y, orders, p, y0, obs_step, obs_w, obs_g, ybar):
    # Step i (order k, c = h / alpha_k), from the adjoint Dbar of its updated differences:
    #   dbar = Dbar_{k+1} + sum_{j<=k} Dbar_j, Ebar_i = sum_{j<=i} Dbar_j,
    #   (I - c J)^T w = dbar, Ebar_j += c J^T w, Ebar_j -= gamma_j / alpha_k w (j >= 1),
    #   pbar += c f_p^T w, Dbar = RU(k, h_i / h_{i-1}) Ebar.
    # ybar leaves as dG/dy0 (observations at t0 excluded: obs_step -1).
    n = y0.shape[0]
    m = p.shape[0]
    tot = n + m
    kmax = U_TABLE.shape[0] - 1
    Dbar = np.zeros((kmax + 2, n))
    Ebar = np.zeros((kmax + 1, n))
    Jy = np.empty((n, n))
    Jp = np.empty((n, m))
    A = np.empty((n, n))
    JT = np.empty((n, n))
    piv = np.zeros(n, np.int64)
    w = np.empty(n)
    pbar = np.zeros(m)
    ey = np.zeros((n, K))
    ep = np.zeros((m, K))
    ycur = np.empty(n)
    yd = dual_array_k(ycur, ey, TAG, K)
    pd = dual_array_k(p, ep, TAG, K)
    out = empty_dual(yd, n)
    o = obs_step.shape[0] - 1
    for i in range(seg_h.shape[0], -1, -1):
        # i = N ... 1: step i-1; i = 0: the start D = [y0, h_1 f(t0, y0)]
        if i > 0:
            s = i - 1
            k = orders[s]
            h = seg_h[s]
            t = seg_t[s + 1]
            for q in range(n):
                ycur[q] = seg_y[s, q]
            while o >= 0 and obs_step[o] == s:
                for j in range(k + 1):
                    for q in range(n):
                        Dbar[j, q] += obs_w[o, j] * obs_g[o, q]
                o -= 1
        else:
            k = 1
            h = seg_h[0]
            t = seg_t[0]
            for q in range(n):
                ycur[q] = y0[q]
        for c0 in range(0, tot, K):  # f_y and f_p at (t, ycur)
            wd = min(K, tot - c0)
            ey.fill(0.0)
            ep.fill(0.0)
            for j in range(wd):
                if c0 + j < n:
                    ey[c0 + j, j] = 1.0
                else:
                    ep[c0 + j - n, j] = 1.0
            rhs(t, yd, pd, out)
            oe = out.eps
            for r in range(n):
                for j in range(wd):
                    if c0 + j < n:
                        Jy[r, c0 + j] = oe[r, j]
                    else:
                        Jp[r, c0 + j - n] = oe[r, j]
        if i == 0:  # ybar = Dbar_0 + h_1 J^T Dbar_1, pbar += h_1 f_p^T Dbar_1
            for q in range(n):
                acc = 0.0
                for r in range(n):
                    acc += Jy[r, q] * Dbar[1, r]
                ybar[q] = Dbar[0, q] + h * acc
            for q in range(m):
                acc = 0.0
                for r in range(n):
                    acc += Jp[r, q] * Dbar[1, r]
                pbar[q] += h * acc
            break
        c = h / ALPHA[k]
        for q in range(n):
            acc = Dbar[k + 1, q]
            run = 0.0
            for j in range(k + 1):
                acc += Dbar[j, q]
                run += Dbar[j, q]
                Ebar[j, q] = run
            w[q] = acc
        for q in range(n):  # J^T, so that the forward solver's LU factors I - c J^T
            for r in range(n):
                JT[q, r] = Jy[r, q]
        factor(JT, c, A, piv)
        solve_lu(A, piv, w, w)
        for q in range(n):
            acc = 0.0
            for r in range(n):
                acc += Jy[r, q] * w[r]
            for j in range(k + 1):
                Ebar[j, q] += c * acc
            for j in range(1, k + 1):
                Ebar[j, q] -= GAMMA[j] / ALPHA[k] * w[q]
        for q in range(m):
            acc = 0.0
            for r in range(n):
                acc += Jp[r, q] * w[r]
            pbar[q] += c * acc
        rho = h / seg_h[s - 1] if s > 0 else 1.0
        R = compute_R(k, rho, np.empty((k + 1, k + 1)))
        for a in range(kmax + 2):
            for q in range(n):
                Dbar[a, q] = 0.0
        for a in range(k + 1):  # Dbar_a = sum_j RU[a, j] Ebar_j, RU = R U
            for j in range(k + 1):
                ru = 0.0
                for b in range(k + 1):
                    ru += R[a, b] * U_TABLE[k, b, j]
                for q in range(n):
                    Dbar[a, q] += ru * Ebar[j, q]
    return pbar


@lru_cache(maxsize=256)
def kernel(f, compile=True, K=nb.CHUNK):
    """Return the compiled (or, with ``compile=False``, plain-Python) sweep for ``f``."""
    return templates.build(
        _bdf_adjoint,
        f,
        K,
        compile,
        "bdf_adjoint",
        compute_R=bdf.compute_R if compile else getattr(bdf.compute_R, "py_func", bdf.compute_R),
        U_TABLE=bdf.U_TABLE,
        GAMMA=bdf.GAMMA,
        ALPHA=bdf.ALPHA,
        factor=_plain(linsolve.factor, compile),
        solve_lu=_plain(linsolve.solve_lu, compile),
    )


def _plain(func, compile):
    """The compiled function, or its Python original for ``compile=False``."""
    return func if compile else getattr(func, "py_func", func)
