"""The compiled right-hand side of the forward-sensitivity system, without per-call overhead.

``sens_rhs(t, Y, P, dY)`` evaluates ``dY = [f(t, y, p), J S + f_p E]`` with one dual
evaluation of the user's f, on the layouts ``Y = [y (n), S (n, K) row-major]`` and
``P = [p (m), E (m, K) row-major]`` (as :func:`sensitivity.sens.kernels.sens_rhs_kernel`).
The integrators call it once per stage, so its fixed cost matters: numba's
``reshape`` of the three flat buffers into (n, K) partials goes through a C helper and an
error check (about 25 ns each, 120 ns per call measured on Lotka-Volterra, where the dual
evaluation itself takes 10 ns). :func:`view2d` builds the same views directly, and
its borrowed form without reference counting, two atomic operations per view and
call (Lotka-Volterra, K = 4: 28.9 ns per call with counted views, 4.6 ns borrowed).
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

from sensitivity.ad import nb
from sensitivity.ad.core import new_tag
from sensitivity.ad.dual import Dual
from sensitivity.ad.nb_array import dual_array_k, empty_dual

# template globals, bound per problem (declared for linters; never used here)
rhs = None
K = 0


def _view_intrinsic(ndim, counted):
    """An intrinsic ``(a, start, rows, cols)``: ``a[start : start + rows * cols]`` as a C view,
    shape (rows, cols), or (rows,) with ``ndim = 1`` (``cols`` unused); no bounds check.

    ``counted``: the view holds a reference to ``a``'s memory, as numba's own views do.
    Otherwise it has no owner (as :func:`sensitivity.ode.control.borrow`) and no code
    counts references for it at all. Such a view must not outlive ``a``: take it only
    of a kernel's arguments, which the caller keeps alive, never of an array the kernel
    allocates (numba may free that after its last direct use).
    """

    def view(typingctx, a, start, rows, cols):
        if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"):
            return None
        out_t = types.Array(a.dtype, ndim, "C")

        def codegen(context, builder, sig, args):
            arr = make_array(a)(context, builder, value=args[0])
            start, rows, cols = (
                context.cast(builder, v, ty, types.intp) for v, ty in zip(args[1:], sig.args[1:])
            )
            size = context.get_abi_sizeof(context.get_data_type(a.dtype))
            itemsize = context.get_constant(types.intp, size)
            out = make_array(out_t)(context, builder)
            two = ndim == 2
            populate_array(
                out,
                data=builder.gep(arr.data, [start]),
                shape=[rows, cols] if two else [rows],
                strides=[builder.mul(cols, itemsize), itemsize] if two else [itemsize],
                itemsize=itemsize,
                meminfo=arr.meminfo if counted else None,
                parent=None,
            )
            res = out._getvalue()
            if counted and context.enable_nrt:  # the view shares (and keeps alive) the memory
                context.nrt.incref(builder, out_t, res)
            return res

        return out_t(a, start, rows, cols), codegen

    view.__name__ = view.__qualname__ = f"{'view' if counted else 'borrowed'}{ndim}d"
    return intrinsic(view)


view2d = _view_intrinsic(2, True)
borrowed1d, borrowed2d = _view_intrinsic(1, False), _view_intrinsic(2, False)


def _sens_rhs_views(t, Y, P, dY):
    # views of the arguments without an owner: no reference counting (_view_intrinsic)
    n = Y.shape[0] // (K + 1)
    m = P.shape[0] // (K + 1)
    yd = dual_array_k(borrowed1d(Y, 0, n, 0), borrowed2d(Y, n, n, K), 0, K)
    pd = dual_array_k(borrowed1d(P, 0, m, 0), borrowed2d(P, m, m, K), 0, K)
    out = dual_array_k(borrowed1d(dY, 0, n, 0), borrowed2d(dY, n, n, K), 0, K)
    rhs(t, yd, pd, out)


@lru_cache(maxsize=256)
def sens_rhs(f, K, compile=True):
    """Return the forward-sensitivity right-hand side for ``f`` and K columns.

    Parameters
    ----------
    f : numba dispatcher or function
        ``prob.rhs_kernel`` (compiled), or the Python function when ``compile`` is False.
    K : int
        Sensitivity columns carried, 1 ... 64.
    compile : bool
        False returns a plain-Python kernel on the numpy-level duals.

    Returns
    -------
    callable
        ``sens_rhs(t, Y (n (K+1),), P (m (K+1),), dY (n (K+1),))``.
    """
    if not compile or not isinstance(f, numba.core.dispatcher.Dispatcher):
        return _python_sens_rhs(f, K)
    g = {"np": np, "rhs": f, "K": K, "dual_array_k": dual_array_k}
    g.update(borrowed1d=borrowed1d, borrowed2d=borrowed2d)
    g["empty_dual"] = empty_dual
    name = f"{f.py_func.__name__}_sens_rhs_views_K{K}_{nb.fingerprint(f)}"
    fn = type(_sens_rhs_views)(_sens_rhs_views.__code__, g, name)
    fn.__qualname__ = name
    fn.__module__ = __name__
    try:
        return numba.njit(cache=True)(fn)
    except RuntimeError:  # no cache locator for this source
        return numba.njit(fn)


def _python_sens_rhs(f, K):
    """``sens_rhs`` in plain Python: numpy-level duals that share one tag.

    (y, p and the output must carry the same tag: with a fresh tag each, products of y and
    p would be nested duals that the output cannot hold.)
    """

    def sens_rhs_python(t, Y, P, dY):
        n = Y.shape[0] // (K + 1)
        m = P.shape[0] // (K + 1)
        tag = new_tag()
        yd = Dual(Y[:n], Y[n:].reshape((n, K)), tag)
        pd = Dual(P[:m], P[m:].reshape((m, K)), tag)
        f(t, yd, pd, Dual(dY[:n], dY[n:].reshape((n, K)), tag))

    return sens_rhs_python
