"""Compiled kernels of the sensitivity solvers, built from the dual-number templates.

Templates follow :func:`sensitivity.ad.nb.make_kernel`: plain functions whose
globals ``rhs`` (the user's compiled function), ``K`` (partials per sweep),
``dual_array_k`` and ``empty_dual`` are bound per problem, compiled with numba
(cached on disk under a name carrying the function's fingerprint), or run as
plain Python on the numpy-level duals when ``compile=False``.

* ``sens_rhs(t, Y, P, dY)``: the forward-sensitivity system in one dual
  evaluation of f. State layout ``Y = [y (n), S (n, K) row-major]``, parameter
  layout ``P = [p (m), E (m, K) row-major]`` with E the parameter seeds, so
  ``dY = [f(t, y, p), J S + f_p E]``.
* ``grad(t, y, p, g_y, g_p) -> g``: value and gradients of a scalar
  ``g(t, y, p)``.
* ``rk_adjoint(...)``: the reverse sweep of an explicit Runge-Kutta solution
  (:mod:`sensitivity.sens.adjoint`); f, df/dy and df/dp of each stage come from
  ceil((n + m)/K) dual sweeps seeding the n + m directions of y and p.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from sensitivity.ad import nb
from sensitivity.ode import explicit
from sensitivity.sens import templates

# template globals, bound by make_kernel (declared for linters; never used here)
rhs = None
K = 0
TAG = 0
dual_array_k = None
empty_dual = None
rk_stages = None
rk_combine = None


def _sens_rhs(t, Y, P, dY):
    n = Y.shape[0] // (K + 1)
    m = P.shape[0] // (K + 1)
    # duals over views of the flat arrays: no copies, the output lands in dY
    yd = dual_array_k(Y[:n], Y[n:].reshape((n, K)), 0, K)
    pd = dual_array_k(P[:m], P[m:].reshape((m, K)), 0, K)
    out = dual_array_k(dY[:n], dY[n:].reshape((n, K)), 0, K)
    rhs(t, yd, pd, out)


def _scalar_grad(t, y, p, gy, gp):
    n = y.shape[0]
    m = p.shape[0]
    ey = np.zeros((n, K))
    yd = dual_array_k(y, ey, 0, K)
    out = empty_dual(yd, 1)
    value = 0.0
    for c0 in range(0, n, K):
        w = min(K, n - c0)
        ey.fill(0.0)
        for j in range(w):
            ey[c0 + j, j] = 1.0
        out[0] = rhs(t, yd, p)
        value = out.val[0]
        for j in range(w):
            gy[c0 + j] = out.eps[0, j]
    ep = np.zeros((m, K))
    pd = dual_array_k(p, ep, 0, K)
    outp = empty_dual(pd, 1)
    for c0 in range(0, m, K):
        w = min(K, m - c0)
        ep.fill(0.0)
        for j in range(w):
            ep[c0 + j, j] = 1.0
        outp[0] = rhs(t, y, pd)
        value = outp.val[0]
        for j in range(w):
            gp[c0 + j] = outp.eps[0, j]
    return value


def _rk_adjoint(seg_t, seg_h, seg_y, p, A, b, c, lam, obs_step, obs_w, obs_g):
    # Reverse sweep of explicit RK steps (rhs is the user's f). Step k:
    #   Y_i = y + h sum_{j<i} a_ij K_j,  K_i = f(t + c_i h, Y_i),  y_new = y + h sum b_i K_i,
    # observations inside it: y_obs = y + h sum_i w_i K_i (the dense output).
    # Adjoint: Kbar_i = h (b_i lam + sum_obs w_i g), then for i = s-1 ... 0:
    #   Ybar_i = J_i^T Kbar_i, pbar += Jp_i^T Kbar_i, ybar += Ybar_i, Kbar_j += h a_ij Ybar_i.
    # lam enters as the adjoint of the final state and leaves as that of y0. The stage
    # values and Jacobians come from dual sweeps seeding the n + m directions of y and p;
    # every buffer is allocated once, outside the step loop.
    n = lam.shape[0]
    m = p.shape[0]
    s = b.shape[0]
    tot = n + m
    Y = np.empty((s, n))
    Kst = np.empty((s, n))
    Jy = np.empty((s, n, n))
    Jp = np.empty((s, n, m))
    Kbar = np.empty((s, n))
    ybar = np.empty(n)
    pbar = np.zeros(m)
    ey = np.zeros((n, K))
    ep = np.zeros((m, K))
    ycur = np.empty(n)
    yd = dual_array_k(ycur, ey, TAG, K)  # one tag: y and p duals of the same sweep
    pd = dual_array_k(p, ep, TAG, K)
    out = empty_dual(yd, n)
    o = obs_step.shape[0] - 1
    for k in range(seg_h.shape[0] - 1, -1, -1):
        t = seg_t[k]
        h = seg_h[k]
        y = seg_y[k]
        for i in range(s):  # recompute the stages, with their Jacobians
            for q in range(n):
                acc = 0.0
                for j in range(i):
                    acc += A[i, j] * Kst[j, q]
                Y[i, q] = y[q] + h * acc
                ycur[q] = Y[i, q]
            for c0 in range(0, tot, K):
                w = min(K, tot - c0)
                ey.fill(0.0)
                ep.fill(0.0)
                for j in range(w):
                    if c0 + j < n:
                        ey[c0 + j, j] = 1.0
                    else:
                        ep[c0 + j - n, j] = 1.0
                rhs(t + c[i] * h, yd, pd, out)
                oe = out.eps
                ov = out.val
                for r in range(n):
                    Kst[i, r] = ov[r]
                    for j in range(w):
                        if c0 + j < n:
                            Jy[i, r, c0 + j] = oe[r, j]
                        else:
                            Jp[i, r, c0 + j - n] = oe[r, j]
        for q in range(n):
            ybar[q] = lam[q]
            for i in range(s):
                Kbar[i, q] = h * b[i] * lam[q]
        while o >= 0 and obs_step[o] == k:
            for q in range(n):
                ybar[q] += obs_g[o, q]
                for i in range(s):
                    Kbar[i, q] += h * obs_w[o, i] * obs_g[o, q]
            o -= 1
        for i in range(s - 1, -1, -1):
            for q in range(n):
                acc = 0.0
                for r in range(n):
                    acc += Jy[i, r, q] * Kbar[i, r]
                ybar[q] += acc
                for j in range(i):
                    Kbar[j, q] += h * A[i, j] * acc
            for q in range(m):
                acc = 0.0
                for r in range(n):
                    acc += Jp[i, r, q] * Kbar[i, r]
                pbar[q] += acc
        for q in range(n):
            lam[q] = ybar[q]
    while o >= 0:  # observations at t0 itself
        for q in range(n):
            lam[q] += obs_g[o, q]
        o -= 1
    return pbar


def _rk_restep(seg_t, i, j, y, p, A, b, c):
    # Steps i ... j-1 of an explicit FSAL RK solution again from its state y_i, with the
    # recorded times (h = t_{k+1} - t_k is the forward's h bitwise) and the forward's own
    # stage and update functions. K_1 of step k is the last stage of step k-1,
    # f(t_{k-1} + c_s h_{k-1}, y_k), as the forward reused it: the states come out
    # bitwise identical to the forward ones.
    n = y.shape[0]
    s = b.shape[0]
    Kst = np.empty((s, n))
    ytmp = np.empty(n)
    y = y.copy()
    y_new = np.empty(n)
    for k in range(i, j):
        t = seg_t[k]
        h = seg_t[k + 1] - t
        if k == 0:
            rhs(t, y, p, Kst[0])
        else:
            rhs(seg_t[k - 1] + c[s - 1] * (t - seg_t[k - 1]), y, p, Kst[0])
        rk_stages(rhs, t, y, p, h, A, c, Kst, ytmp, 1, s)
        rk_combine(y, h, b, Kst, y_new)
        for m in range(n):  # a loop: a slice copy's shape check compiles string formatting
            y[m] = y_new[m]
    return y


def _rk_stages_bound(t, y, p, h, A, c, Kst, ytmp, i0, i1):
    # explicit.rk_stages with the problem's rhs bound: a compiled stage loop that a Python
    # step loop (a kernel's twin) can call
    rk_stages(rhs, t, y, p, h, A, c, Kst, ytmp, i0, i1)


@lru_cache(maxsize=256)
def rk_stages_kernel(f, compile=True):
    """Return ``stages(t, y, p, h, A, c, K, ytmp, i0, i1)``: explicit.rk_stages for ``f``."""
    stages = explicit.rk_stages
    if not compile:  # the plain-Python original
        stages = getattr(stages, "py_func", stages)
    return templates.build(_rk_stages_bound, f, 1, compile, "rk_stages", rk_stages=stages)


@lru_cache(maxsize=256)
def rk_restep_kernel(f, compile=True):
    """Return the compiled re-stepping of explicit FSAL RK steps for ``f`` (see source)."""
    stages, combine = explicit.rk_stages, explicit.rk_combine
    if not compile:  # the plain-Python originals
        stages = getattr(stages, "py_func", stages)
        combine = getattr(combine, "py_func", combine)
    return templates.build(
        _rk_restep, f, 1, compile, "rk_restep", rk_stages=stages, rk_combine=combine
    )


@lru_cache(maxsize=256)
def rk_adjoint_kernel(f, compile=True, K=nb.CHUNK):
    """Return the compiled reverse sweep of explicit RK steps for ``f`` (see source)."""
    return templates.build(_rk_adjoint, f, K, compile, "rk_adjoint")


@lru_cache(maxsize=256)
def sens_rhs_kernel(f, K, compile=True):
    """Return the compiled forward-sensitivity right-hand side for ``f`` and K columns.

    Parameters
    ----------
    f : numba dispatcher or function
        The compiled right-hand side (``prob.rhs_kernel``), or the Python
        function when ``compile`` is False.
    K : int
        Sensitivity columns carried.
    compile : bool
    """
    return nb.make_kernel(_sens_rhs, f, K, compile=compile)


@lru_cache(maxsize=256)
def scalar_gradient_kernel(g, compile=True, K=nb.CHUNK):
    """Return ``grad(t, y, p, g_y, g_p) -> value`` for a scalar ``g(t, y, p)``."""
    fn = nb.compile_rhs(g) if compile else g
    return nb.make_kernel(_scalar_grad, fn, K, compile=compile)


@lru_cache(maxsize=256)
def vector_jacobian_kernels(h, n_out, compile=True, K=nb.CHUNK):
    """Return ``(h, dh_dy, dh_dp)`` kernels for ``h(t, y, p, out)`` with ``out`` (n_out,).

    ``dh_dy(t, y, p, H)`` fills H (n_out, n); ``dh_dp(t, y, p, H)`` fills (n_out, m).
    """
    fn = nb.compile_rhs(h) if compile else h
    return (
        fn,
        nb.make_kernel("jac", fn, K, compile=compile),
        nb.make_kernel("param_jac", fn, K, compile=compile),
    )


def seeds(m, n, columns):
    """Seed arrays for a chunk of sensitivity columns.

    Parameters
    ----------
    m, n : int
        Numbers of parameters and states.
    columns : sequence of int
        Global column indices: ``j < m`` is parameter j, ``j >= m`` is y0[j - m].

    Returns
    -------
    E : ndarray, shape (m, K)
        Parameter seeds.
    S0 : ndarray, shape (n, K)
        Initial sensitivities.
    """
    k = len(columns)
    E, S0 = np.zeros((m, k)), np.zeros((n, k))
    for c, j in enumerate(columns):
        if j < m:
            E[j, c] = 1.0
        else:
            S0[j - m, c] = 1.0
    return E, S0
