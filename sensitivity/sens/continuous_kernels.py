"""Compiled kernels of the continuous adjoint (:mod:`sensitivity.sens.continuous`).

Templates as in :func:`sensitivity.ad.nb.make_kernel`, with two user functions
bound per problem: ``rhs`` (the compiled f) and ``gfun`` (the integrand
``g(t, y, p) -> float`` of an integral objective, or a zero function), plus
``interp`` (the dense-output evaluation below).

* ``adj_rhs(t, lam, q, out)``: ``out = -J(t, y(t))^T lam - g_y(t, y(t))``, the
  adjoint right-hand side, with y(t) read from the forward dense output packed
  into ``q`` (layout in :func:`pack`). J^T lam is accumulated chunk by chunk
  from dual sweeps of f: J itself is never stored.
* ``adj_jac(t, lam, q, Jo)``: ``Jo = -J(t, y(t))^T``, the adjoint's Jacobian.
* ``param_quad(T, Y, L, W, p, out)``: ``out += sum_k W_k L_k^T f_p(T_k, Y_k)``,
  the parameter quadrature (ceil(m/K) dual sweeps per node).
* ``g_quad(T, Y, W, p, gp) -> sum_k W_k g(T_k, Y_k)``, and ``gp += sum_k W_k
  g_p(T_k, Y_k)``: the integral objective's value and its explicit p-gradient.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np

from sensitivity.ad import nb
from sensitivity.sens import templates

# template globals, bound by _build (declared for linters; never used here)
rhs = None
gfun = None
interp = None
K = 0
dual_array_k = None
empty_dual = None

HEADER = 8  # q = [n, m, nseg, at_end, deg, has_integral, lo, hi, p, seg_t, seg_h, seg_y, seg_Q]


def pack(p, segments, integral_span=None):
    """Pack parameters and a dense output into the adjoint kernels' ``q`` (1-D float64).

    Parameters
    ----------
    p : ndarray, shape (m,)
    segments : tuple
        ``Solution.segments``: ``(seg_t (N+1,), seg_h (N,), seg_y (N, n), seg_Q (N, n, d),
        anchor_at_end)``.
    integral_span : (float, float) or None
        Interval of an integral objective's integrand ``g`` (None: no integrand).
    """
    seg_t, seg_h, seg_y, seg_Q, at_end = segments
    N, n = seg_y.shape
    d = seg_Q.shape[2]
    lo, hi = (0.0, 0.0) if integral_span is None else (min(integral_span), max(integral_span))
    head = [n, p.size, N, float(at_end), d, float(integral_span is not None), lo, hi]
    return np.concatenate([np.array(head, float), p, seg_t, seg_h, seg_y.ravel(), seg_Q.ravel()])


def _interp(t, q, y):
    # y(t) from the dense output in q: step i covers [seg_t[i], seg_t[i+1]] and
    # y = y_anchor[i] + sum_j Q[i, :, j] s^(j+1), s = (t - anchor) / h[i]
    n = y.shape[0]
    m = int(q[1])
    N = int(q[2])
    d = int(q[4])
    o_t = HEADER + m
    o_h = o_t + N + 1
    o_y = o_h + N
    o_q = o_y + N * n
    forward = q[o_t + N] >= q[o_t]
    lo, hi = 0, N - 1  # bisection for the step holding t
    while lo < hi:
        mid = (lo + hi) // 2
        right = q[o_t + mid + 1]
        if (t > right) if forward else (t < right):
            lo = mid + 1
        else:
            hi = mid
    i = lo
    anchor = q[o_t + i + 1] if q[3] != 0.0 else q[o_t + i]
    s = (t - anchor) / q[o_h + i]
    for r in range(n):
        acc = 0.0
        sp = 1.0
        base = o_q + (i * n + r) * d
        for j in range(d):
            sp *= s
            acc += q[base + j] * sp
        y[r] = q[o_y + i * n + r] + acc


def _adj_rhs(t, lam, q, out):
    n = lam.shape[0]
    m = int(q[1])
    p = q[HEADER : HEADER + m]
    y = np.empty(n)
    interp(t, q, y)
    ey = np.zeros((n, K))
    yd = dual_array_k(y, ey, 0, K)
    o = empty_dual(yd, n)
    for c0 in range(0, n, K):  # out[c] = -sum_r J[r, c] lam[r], chunk by chunk
        w = min(K, n - c0)
        ey.fill(0.0)
        for j in range(w):
            ey[c0 + j, j] = 1.0
        rhs(t, yd, p, o)
        oe = o.eps
        for j in range(w):
            acc = 0.0
            for r in range(n):
                acc += oe[r, j] * lam[r]
            out[c0 + j] = -acc
    if q[5] != 0.0 and q[6] <= t <= q[7]:  # the integrand's source term -g_y
        og = empty_dual(yd, 1)
        for c0 in range(0, n, K):
            w = min(K, n - c0)
            ey.fill(0.0)
            for j in range(w):
                ey[c0 + j, j] = 1.0
            og[0] = gfun(t, yd, p)
            for j in range(w):
                out[c0 + j] -= og.eps[0, j]


def _adj_jac(t, lam, q, Jo):
    n = lam.shape[0]
    m = int(q[1])
    p = q[HEADER : HEADER + m]
    y = np.empty(n)
    interp(t, q, y)
    ey = np.zeros((n, K))
    yd = dual_array_k(y, ey, 0, K)
    o = empty_dual(yd, n)
    for c0 in range(0, n, K):
        w = min(K, n - c0)
        ey.fill(0.0)
        for j in range(w):
            ey[c0 + j, j] = 1.0
        rhs(t, yd, p, o)
        oe = o.eps
        for r in range(n):
            for j in range(w):
                Jo[c0 + j, r] = -oe[r, j]


def _param_quad(T, Y, L, W, p, out):
    n = Y.shape[1]
    m = p.shape[0]
    ep = np.zeros((m, K))
    pd = dual_array_k(p, ep, 0, K)
    o = empty_dual(pd, n)
    y = np.empty(n)
    for k in range(T.shape[0]):
        for r in range(n):
            y[r] = Y[k, r]
        for c0 in range(0, m, K):
            w = min(K, m - c0)
            ep.fill(0.0)
            for j in range(w):
                ep[c0 + j, j] = 1.0
            rhs(T[k], y, pd, o)
            oe = o.eps
            for j in range(w):
                acc = 0.0
                for r in range(n):
                    acc += oe[r, j] * L[k, r]
                out[c0 + j] += W[k] * acc


def _g_quad(T, Y, W, p, gp):
    n = Y.shape[1]
    m = p.shape[0]
    ep = np.zeros((m, K))
    pd = dual_array_k(p, ep, 0, K)
    og = empty_dual(pd, 1)
    y = np.empty(n)
    value = 0.0
    for k in range(T.shape[0]):
        for r in range(n):
            y[r] = Y[k, r]
        value += W[k] * gfun(T[k], y, p)
        for c0 in range(0, m, K):
            w = min(K, m - c0)
            ep.fill(0.0)
            for j in range(w):
                ep[c0 + j, j] = 1.0
            og[0] = gfun(T[k], y, pd)
            for j in range(w):
                gp[c0 + j] += W[k] * og.eps[0, j]
    return value


def _no_integrand(t, y, p):
    return 0.0 * y[0]


_interp_jit = numba.njit(cache=True)(_interp)
_no_integrand_jit = numba.njit(cache=True)(_no_integrand)
TEMPLATES = {
    "adj_rhs": _adj_rhs,
    "adj_jac": _adj_jac,
    "param_quad": _param_quad,
    "g_quad": _g_quad,
}


@lru_cache(maxsize=256)
def kernel(kind, f, g=None, compile=True, K=nb.CHUNK):
    """Return the continuous-adjoint kernel ``kind`` of :data:`TEMPLATES` for ``f`` and ``g``.

    Parameters
    ----------
    kind : str
    f : numba dispatcher or function
        The problem's ``rhs_kernel``.
    g : callable or None
        The integrand of an integral objective (None: none).
    compile : bool
        False runs the template as plain Python on the numpy-level duals.
    K : int
        Partials per dual sweep.
    """
    if g is None:
        g = _no_integrand_jit if compile else _no_integrand
    gf = nb.compile_rhs(g) if compile else nb._py_func(g)
    return templates.build(
        TEMPLATES[kind],
        f,
        K,
        compile,
        kind,
        fingerprints=(gf,),
        gfun=gf,
        interp=_interp_jit if compile else _interp,
        HEADER=HEADER,
    )
