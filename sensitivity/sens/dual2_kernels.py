"""Second-order kernels: directional derivatives of the sensitivity right-hand side.

With ``G(y, p) = f_y S + f_p S_p`` (the right-hand side of the forward
sensitivities ``S' = G``), one evaluation of the user's ``f`` on the
second-order duals of :mod:`sensitivity.ad.nb_dual2` seeded as

    y = (y + S ε) + (u + W ε) δ,     p = (p + S_p ε) + (u_p + W_p ε) δ

returns, for the K columns of ``S`` at once::

    f                                       value
    G  = f_y S + f_p S_p                    ε-partials (n, K)
    fd = f_y u + f_p u_p                    δ-partial (n,)
    dG = d/dδ G(y + δ u, p + δ u_p) + f_y W + f_p W_p
       = f_yy[u, S] + f_yp[u, S_p] + f_py[u_p, S] + f_pp[u_p, S_p] + f_y W + f_p W_p

With ``W = W_p = 0``, ``dG`` is the directional derivative of ``G`` along
``(u, u_p)`` (exact Hessian-vector products); with ``u_p = 0`` and ``W = U``,
``(fd, dG)`` is the Jacobian of the augmented system ``(y, S) -> (f, G)`` applied
to ``(u, U)``, what a Rosenbrock stage of the sensitivities needs.

Kernels are built as :mod:`sensitivity.sens.templates` builds the others: the
template's globals bind the compiled ``f`` and ``K``, the name carries ``f``'s
fingerprint (and the dual types' stamp), numba caches it on disk, and with
``compile=False`` (or ``NUMBA_DISABLE_JIT=1``) the same template runs on the
nested numpy-level duals of :mod:`sensitivity.ad.dual` (ε tag ``TAG``, δ tag
``TAG2 > TAG``).
"""

from __future__ import annotations

from functools import lru_cache

import numba

from sensitivity.ad.core import new_tag
from sensitivity.ad.nb_dual2_array import dual2_array_k
from sensitivity.sens import templates
from sensitivity.sens.forward_kernels import borrowed1d, borrowed2d

__all__ = ["aug_jvp_kernel", "second_order_kernel"]

# template globals, bound per kernel (declared for linters; never used here)
rhs = None
K = 0
TAG = 0
TAG2 = 0
view1d = view2d = None


def _second_order(t, y, p, S, Sp, u, up, W, Wp, f, G, fd, dG):
    # y, p, u, up, f, fd (n,) or (m,); S, Sp, W, Wp, G, dG (n, K) or (m, K), rows contiguous.
    # The outputs are views of the caller's arrays: f writes them directly.
    yd = dual2_array_k(y, S, u, W, TAG, TAG2, K)
    pd = dual2_array_k(p, Sp, up, Wp, TAG, TAG2, K)
    out = dual2_array_k(f, G, fd, dG, TAG, TAG2, K)
    rhs(t, yd, pd, out)


def _second_order_y(t, y, p, S, u, W, f, G, fd, dG):
    # As _second_order with p a plain float array (S_p = u_p = W_p = 0): cheaper.
    yd = dual2_array_k(y, S, u, W, TAG, TAG2, K)
    out = dual2_array_k(f, G, fd, dG, TAG, TAG2, K)
    rhs(t, yd, p, out)


def _aug_jvp(t, Y, P, V, out):
    # J_aug V for the augmented system [y, S]' = [f, f_y S + f_p E]. Layouts: Y = [y (n),
    # S (n, K) row-major], P = [p (m), E (m, K)], V = [u (n), U (n, K), u_p (m), W_p (m, K)],
    # out (2 N): [f, G] then dY = [f_y u + f_p u_p, f_yy[u, S] + f_yp.. + f_y U + f_p W_p].
    # Caller-owned buffers: no allocation per call (it runs once per Rosenbrock stage).
    n = Y.shape[0] // (K + 1)
    m = P.shape[0] // (K + 1)
    N = Y.shape[0]
    # views of the arguments (compiled: without an owner, so not reference-counted)
    a, b = view2d(Y, n, n, K), view2d(V, n, n, K)
    yd = dual2_array_k(view1d(Y, 0, n, 0), a, view1d(V, 0, n, 0), b, TAG, TAG2, K)
    a, b = view2d(P, m, m, K), view2d(V, N + m, m, K)
    pd = dual2_array_k(view1d(P, 0, m, 0), a, view1d(V, N, m, 0), b, TAG, TAG2, K)
    a, b = view2d(out, n, n, K), view2d(out, N + n, n, K)
    res = dual2_array_k(view1d(out, 0, n, 0), a, view1d(out, N, n, 0), b, TAG, TAG2, K)
    rhs(t, yd, pd, res)


def _view2d_python(a, start, rows, cols):
    # forward_kernels.borrowed2d for the plain-Python kernels
    return a[start : start + rows * cols].reshape((rows, cols))


def _view1d_python(a, start, rows, cols):
    # forward_kernels.borrowed1d for the plain-Python kernels
    return a[start : start + rows]


def _tags(compile):
    python = not compile or numba.config.DISABLE_JIT
    tag = new_tag() if python else 0
    return tag, (new_tag() if python else 0)  # the δ differentiation encloses the ε one


@lru_cache(maxsize=256)
def aug_jvp_kernel(f, K, compile=True):
    """Return ``aug_jvp(t, Y, P, V, out)``: the augmented system's Jacobian times V.

    For the forward-sensitivity system ``[y, S]' = [f, G]``, ``G = f_y S + f_p E``, on the
    layouts of :func:`sensitivity.sens.kernels.sens_rhs_kernel` (``Y`` (N,) = [y, S],
    ``P`` (m (K+1),) = [p, E], N = n (K+1)) and a direction ``V`` (N + m (K+1),) =
    ``[u, U, u_p, W_p]``, fills ``out`` (2 N,) with ``[f, G]`` and then
    ``[f_y u + f_p u_p, d/dδ G(y + δ u, p + δ u_p) + f_y U + f_p W_p]``: one evaluation
    of f on second-order duals. With ``u_p = W_p = 0`` the second half is the
    block lower-triangular ``J_aug [u, U] = [J u, B u + J U]``. All arrays C-contiguous.
    Arguments as :func:`second_order_kernel`.
    """
    tag, tag2 = _tags(compile)
    python = not compile or numba.config.DISABLE_JIT
    return templates.build(
        _aug_jvp, f, K, compile, "aug_jvp", TAG=tag, TAG2=tag2, dual2_array_k=dual2_array_k,
        view2d=_view2d_python if python else borrowed2d,
        view1d=_view1d_python if python else borrowed1d,
    )  # fmt: skip


@lru_cache(maxsize=256)
def second_order_kernel(f, K, compile=True, wrt_p=True):
    """Return the second-order kernel of ``f`` for K sensitivity columns.

    Parameters
    ----------
    f : numba dispatcher or function
        The compiled right-hand side (``prob.rhs_kernel`` or
        :func:`sensitivity.ad.nb.compile_rhs`), or the Python function when
        ``compile`` is False.
    K : int
        Columns of ``S`` carried at once (1 ... 64).
    compile : bool
        False runs the template as plain Python on nested numpy-level duals.
    wrt_p : bool
        True: ``kernel(t, y, p, S, Sp, u, up, W, Wp, f, G, fd, dG)``.
        False: ``kernel(t, y, p, S, u, W, f, G, fd, dG)`` with ``p`` held
        constant (S_p = u_p = W_p = 0), one dual array fewer.

    Returns
    -------
    callable
        Fills ``f`` (n,), ``G`` (n, K), ``fd`` (n,), ``dG`` (n, K) as in the
        module docstring; arrays of shape (n, K) and (m, K) must have
        contiguous rows. An ``njit`` dispatcher, or a Python function when
        ``compile`` is False.
    """
    tag, tag2 = _tags(compile)
    tmpl, label = (_second_order, "so") if wrt_p else (_second_order_y, "so_y")
    return templates.build(
        tmpl, f, K, compile, label, TAG=tag, TAG2=tag2, dual2_array_k=dual2_array_k
    )
