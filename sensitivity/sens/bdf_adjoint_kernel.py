"""Compiled reverse sweep of a dense BDF solution (small n, or a banded Jacobian).

The same transpose as :func:`sensitivity.sens.bdf_adjoint.bdf_adjoint` in one compiled
loop: per step, f_y and f_p at the step's end, the LU of :mod:`sensitivity.ode.linsolve`
of ``I - c J^T`` and the rescale matrices of :func:`sensitivity.ode.bdf.change_D` built in
place. Dense: f_y and f_p from ceil((n + m)/K) dual sweeps of f, a dense LU. Banded (a
narrow Jacobian pattern, any n): f_y in band storage from ceil((kl + ku + 1)/K) sweeps,
the values of f_p's pattern from its colouring's sweeps, the banded LU (O(n kl (kl + ku))
instead of O(n^3)). Template globals (``rhs``, ``K``, ``dual_array_k``, ``empty_dual``,
``compute_R``, ``U_TABLE``, ``GAMMA``, ``ALPHA``, ``workspace``, ``transposed``,
``factor``, ``solve_lu``, ``LAYOUT``: the band of J^T as linsolve's ``opts[-2:]``,
``BAND``, ``band_jac`` and the helpers below) are bound by :func:`kernel`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from sensitivity.ad import nb
from sensitivity.ad.sparsity import compression
from sensitivity.ode import bdf, linsolve
from sensitivity.ode.control import jit
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
workspace = None
transposed = None
LAYOUT = None
BAND = False
dense_jacobians = None
band_jac = None
param_values = None


def _bdf_adjoint(seg_t, seg_h, seg_y, orders, p, y0, obs_step, obs_w, obs_g, ybar, pcol):
    # Step i (order k, c = h / alpha_k), from the adjoint Dbar of its updated differences:
    #   dbar = Dbar_{k+1} + sum_{j<=k} Dbar_j, Ebar_i = sum_{j<=i} Dbar_j,
    #   (I - c J)^T w = dbar, Ebar_j += c J^T w, Ebar_j -= gamma_j / alpha_k w (j >= 1),
    #   pbar += c f_p^T w, Dbar = RU(k, h_i / h_{i-1}) Ebar.
    # ybar leaves as dG/dy0 (observations at t0 excluded: obs_step -1).
    n = y0.shape[0]
    m = p.shape[0]
    kmax = U_TABLE.shape[0] - 1
    Dbar = np.zeros((kmax + 2, n))
    Ebar = np.zeros((kmax + 1, n))
    JT, A, piv = workspace(n, LAYOUT)  # J^T and the LU of I - c J^T, dense or banded
    Jy = np.empty(JT.shape)  # J, in the storage of JT
    Jp = np.empty((n, 0 if BAND else m))  # dense f_p (dense sweep)
    Jpv = np.empty(pcol.positions.shape[0])  # the values of f_p's pattern (banded sweep)
    w = np.empty(n)
    jtw = np.empty(n)
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
        if BAND:
            band_jac(t, ycur, p, Jy)  # f_y in band storage (linsolve.band_jacobian)
            param_values(t, yd, pd, out, ey, ep, pcol, Jpv)
        else:
            dense_jacobians(t, yd, pd, out, ey, ep, Jy, Jp)
        if i == 0:  # ybar = Dbar_0 + h_1 J^T Dbar_1, pbar += h_1 f_p^T Dbar_1
            jt_vec(Jy, piv, Dbar[1], jtw)
            for q in range(n):
                ybar[q] = Dbar[0, q] + h * jtw[q]
            jpt_vec(Jp, Jpv, pcol, Dbar[1], h, pbar)
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
        transposed(Jy, JT, piv)  # so that the forward solver's LU factors I - c J^T
        factor(JT, c, A, piv)
        solve_lu(A, piv, w, w)
        jt_vec(Jy, piv, w, jtw)
        for q in range(n):
            for j in range(k + 1):
                Ebar[j, q] += c * jtw[q]
            for j in range(1, k + 1):
                Ebar[j, q] -= GAMMA[j] / ALPHA[k] * w[q]
        jpt_vec(Jp, Jpv, pcol, w, c, pbar)
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


def _dense_jacobians(t, yd, pd, out, ey, ep, Jy, Jp):
    # f_y (n, n) and f_p (n, m) at (t, y) from ceil((n + m)/K) sweeps (y and p in one)
    n = ey.shape[0]
    m = ep.shape[0]
    tot = n + m
    for c0 in range(0, tot, K):
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


def _param_values(t, yd, pd, out, ey, ep, pcol, Jpv):
    # the values of f_p's pattern at (t, y) from its colouring's sweeps (pcol: compression)
    n = ey.shape[0]
    ey.fill(0.0)
    seeds = pcol.seeds
    pos = pcol.positions
    for c in range(seeds.shape[0]):
        for j in range(ep.shape[0]):
            for a in range(K):
                ep[j, a] = seeds[c, j, a]
        rhs(t, yd, pd, out)
        flat = out.eps
        for q in range(pcol.ptr[c], pcol.ptr[c + 1]):  # the entries of this sweep
            g = pos[q] - c * n * K
            Jpv[q] = flat[g // K, g % K]


@jit()
def no_band_jac(t, y, p, J):
    """The ``band_jac`` global of the dense sweep (never called there)."""


@jit()
def jt_vec(Jy, piv, v, out):
    # out = J^T v; J dense (n, n) or in band storage (band of J^T in piv: kl' = ku of J)
    n = v.shape[0]
    if piv.shape[0] > n:
        klt, kut = piv[n], piv[n + 1]
        w = klt + kut + 1
        qw = 0  # q % w
        for q in range(n):
            acc = 0.0
            for r in range(max(0, q - klt), min(n, q + kut + 1)):
                acc += Jy[r, qw] * v[r]
            out[q] = acc
            qw = qw + 1 if qw + 1 < w else 0
    else:
        for q in range(n):
            acc = 0.0
            for r in range(n):
                acc += Jy[r, q] * v[r]
            out[q] = acc


@jit()
def jpt_vec(Jp, Jpv, pcol, v, scale, pbar):
    # pbar += scale f_p^T v; f_p dense (n, m) or the values Jpv of its pattern (pcol)
    if Jpv.shape[0] > 0:
        rows = pcol.rows
        cols = pcol.cols
        for q in range(Jpv.shape[0]):
            pbar[cols[q]] += scale * Jpv[q] * v[rows[q]]
    else:
        for q in range(Jp.shape[1]):
            acc = 0.0
            for r in range(Jp.shape[0]):
                acc += Jp[r, q] * v[r]
            pbar[q] += scale * acc


class PColouring(NamedTuple):
    """A compression of f_p's pattern for the banded sweep (empty arrays: dense f_p).

    ``seeds`` (nchunk, m, K) and ``positions`` (nnz,) of
    :func:`sensitivity.ad.sparsity.compression`, ``rows``, ``cols`` (nnz,): the entries,
    all ordered by sweep; the entries of sweep c are ``ptr[c] ... ptr[c + 1] - 1``.
    """

    seeds: np.ndarray
    positions: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    ptr: np.ndarray


def p_colouring(prob, K):
    """The :class:`PColouring` of ``prob``'s f_p for K partials per sweep.

    Without a ``param_sparsity`` the pattern is full, one colour per parameter.
    """
    n, m = prob.n, prob.m
    if prob.param_sparsity is not None:
        S = prob.param_sparsity
        colors, ncolors = prob.param_colors
    else:
        S = sp.csr_matrix(np.ones((n, m)))
        colors, ncolors = np.arange(m), m
    seeds, pos = compression(S, colors, max(ncolors, 1), K)
    rows = np.repeat(np.arange(n), np.diff(S.indptr)).astype(np.int64)
    cols = S.indices.astype(np.int64)
    chunk = colors[cols] // K
    order = np.argsort(chunk, kind="stable")
    ptr = np.searchsorted(chunk[order], np.arange(seeds.shape[0] + 1)).astype(np.int64)
    return PColouring(seeds, pos[order], rows[order], cols[order], ptr)


def no_p_colouring():
    """The :class:`PColouring` of the dense sweep (f_p in dense sweeps)."""
    empty = np.zeros(0, np.int64)
    return PColouring(np.zeros((0, 0, 0)), empty, empty, empty, np.zeros(1, np.int64))


@lru_cache(maxsize=256)
def kernel(f, compile=True, K=nb.CHUNK, band=None, band_jac=None):
    """Return the compiled (or, with ``compile=False``, plain-Python) sweep for ``f``.

    ``band = (kl, ku)`` of f's Jacobian: f_y in band storage from ``band_jac``
    (:func:`sensitivity.ode.linsolve.band_jacobian`), f_p from a :class:`PColouring`, the
    banded LU of linsolve (None: dense f_y and f_p, dense LU). The sweep's last argument is the
    :class:`PColouring` (:func:`no_p_colouring` for the dense one).
    """
    layout = linsolve.DENSE if band is None else np.array([band[1], band[0]], np.float64)
    label = "bdf_adjoint" if band is None else f"bdf_adjoint_band{band[0]}_{band[1]}"
    return templates.build(
        _bdf_adjoint,
        f,
        K,
        compile,
        label,
        compute_R=_plain(bdf.compute_R, compile),
        U_TABLE=bdf.U_TABLE,
        GAMMA=bdf.GAMMA,
        ALPHA=bdf.ALPHA,
        factor=_plain(linsolve.factor, compile),
        solve_lu=_plain(linsolve.solve_lu, compile),
        workspace=_plain(linsolve.workspace, compile),
        transposed=_plain(linsolve.transposed, compile),
        LAYOUT=layout,
        BAND=band is not None,
        dense_jacobians=templates.build(_dense_jacobians, f, K, compile, "adj_dense_jac"),
        band_jac=_plain(no_band_jac, compile) if band_jac is None else band_jac,
        param_values=templates.build(_param_values, f, K, compile, "adj_param_values"),
        jt_vec=_plain(jt_vec, compile),
        jpt_vec=_plain(jpt_vec, compile),
    )


def _plain(func, compile):
    """The compiled function, or its Python original for ``compile=False``."""
    return func if compile else getattr(func, "py_func", func)
