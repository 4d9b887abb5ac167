"""Build the sensitivity solvers' kernel templates with more globals than make_kernel binds.

:func:`sensitivity.ad.nb.make_kernel` binds ``rhs``, ``K``, ``np``, ``dual_array_k`` and
``empty_dual``. The adjoint sweeps also need the integrand of an objective, tables of the
BDF method and ``TAG``: the differentiation tag that the duals of one sweep share. The
compiled duals ignore it (0); the numpy-level duals of ``compile=False`` (and of
``NUMBA_DISABLE_JIT=1``) treat duals of different tags as nested differentiations, so the
y- and p-duals of one sweep must carry the same tag.
"""

from __future__ import annotations

import types as pytypes

import numba
import numpy as np

from sensitivity.ad import nb
from sensitivity.ad.core import new_tag


def build(tmpl, f, K, compile, label, fingerprints=(), **extra):
    """Return template ``tmpl`` bound to ``f`` (and ``extra`` globals), compiled or Python.

    Parameters
    ----------
    tmpl : function
        The template (plain Python code using the globals below).
    f : numba dispatcher or function
        The problem's ``rhs_kernel``, bound as ``rhs``.
    K : int
        Partials per dual sweep.
    compile : bool
    label : str
        Names the kernel (and its on-disk cache entry) with ``f``'s fingerprint.
    fingerprints : tuple of callables
        Further user functions among ``extra`` whose fingerprints enter the name.
    """
    glb = {
        "np": np,
        "rhs": f,
        "K": K,
        "TAG": 0 if compile and not numba.config.DISABLE_JIT else new_tag(),
        "dual_array_k": nb.dual_array_k,
        "empty_dual": nb.empty_dual,
    }
    glb.update(extra)
    prints = "_".join(nb.fingerprint(g) for g in (f, *fingerprints))
    name = f"{nb._py_func(f).__name__}_{label}_K{K}_{prints}"
    fn = pytypes.FunctionType(tmpl.__code__, glb, name)
    fn.__qualname__ = name
    fn.__module__ = nb.__name__
    fn.__doc__ = tmpl.__doc__
    return nb._njit(fn, True) if compile else fn
