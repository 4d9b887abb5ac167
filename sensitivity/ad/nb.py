"""Dual numbers inside numba kernels, and the derivative kernels built from them.

A right-hand side ``f(t, y, p, dydt)`` written once in the numba style compiles
for float64 arrays and for ``DualArray{K}`` arguments in any mix (``y`` dual,
``p`` dual, or both with the same K), K = 1 ... 64. The scalar operations are
generated from :data:`sensitivity.ad.rules.RULES` (:mod:`.nb_ops`), the array
operations live in :mod:`.nb_array`, the types and vector intrinsics in
:mod:`.nb_types`. Importing this module registers all of them.

This module builds, for one right-hand side, the compiled kernels

- ``rhs(t, y, p, dydt)``                     f on floats
- ``jac(t, y, p, J)``                        dense df/dy, (n, n), ceil(n/K) sweeps
- ``param_jac(t, y, p, Jp)``                 dense df/dp, (n, m)
- ``jvp(t, y, p, v, out)``                   (df/dy) v, one sweep (v in partial 0)
- ``param_jvp(t, y, p, u, out)``             (df/dp) u, one sweep
- ``jac_cols(t, y, p, c0, E)``               columns c0 ... c0+K-1 of df/dy
- ``sparse_jac(t, y, p, seeds, pos, runs, loose, data)``  CSR values of df/dy from
  a column colouring, ceil(ncolors/K) sweeps; ``seeds`` and ``pos`` from
  :func:`sensitivity.ad.sparsity.compression`, ``runs`` and ``loose`` from
  :func:`sensitivity.ad.sparsity.colour_runs` (see :func:`assembler`);
  ``sparse_param_jac`` likewise.

Each kernel is the code of a template below with its own globals (the user's
compiled ``f``, the chunk size ``K``) and a name that carries a fingerprint of
``f``'s source and of :data:`.nb_types.STAMP`. numba caches it on disk under
that name, so a second process reuses it, and a changed rule table (or a
changed ``f``) gets a new name and recompiles. Under ``compile=False`` (or
``NUMBA_DISABLE_JIT=1``) the same templates run as plain Python on the
numpy-level duals of :mod:`sensitivity.ad.dual`.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import types as pytypes
import warnings

import numba
import numpy as np
from numba.core import errors as nb_errors
from numba.core import types
from numba.core.dispatcher import Dispatcher
from numba.extending import overload

from sensitivity.ad import nb_box, nb_ops  # noqa: F401  (register overloads and boxing)
from sensitivity.ad.nb_array import dual_array, dual_array_k, empty_dual, similar
from sensitivity.ad.nb_types import KMAX, STAMP, DualArrayType, DualType, vcopy

__all__ = [
    "CHUNK",
    "DualArrayType",
    "DualType",
    "RHSCompileError",
    "compile_rhs",
    "dual_array",
    "dual_array_k",
    "explain_compile_error",
    "fingerprint",
    "make_kernel",
    "similar",
]

CHUNK = 8  # partials per dual sweep for dense Jacobians: <8 x double> = two AVX2 registers


class RHSCompileError(TypeError):
    """numba could not compile a right-hand side (on floats or on duals)."""


# ---- kernel templates: plain functions whose globals are set per problem --------------
# make_kernel runs each template's code with its own globals: rhs (the compiled f),
# K (partials per sweep), np, dual_array_k, empty_dual. Outputs share the input
# dual's tag (it matters to the numpy-level duals). The module-level names below
# only declare them; templates never run with these.
rhs = assemble = None
K = 0


def _jac_t(t, y, p, J):
    n = y.shape[0]
    r = J.shape[0]  # rows: n for a right-hand side, fewer for an observation function
    ey = np.zeros((n, K))
    yd = dual_array_k(y, ey, 0, K)  # reseeded in place for every chunk of columns
    out = empty_dual(yd, r)
    for c0 in range(0, n, K):
        w = min(K, n - c0)
        ey.fill(0.0)
        for j in range(w):
            ey[c0 + j, j] = 1.0
        rhs(t, yd, p, out)
        oe = out.eps  # hoisted: a struct member read in the loop costs a refcount each time
        for i in range(r):
            for j in range(w):
                J[i, c0 + j] = oe[i, j]


def _param_jac_t(t, y, p, J):
    r = J.shape[0]
    m = p.shape[0]
    ep = np.zeros((m, K))
    pd = dual_array_k(p, ep, 0, K)
    out = empty_dual(pd, r)
    for c0 in range(0, m, K):
        w = min(K, m - c0)
        ep.fill(0.0)
        for j in range(w):
            ep[c0 + j, j] = 1.0
        rhs(t, y, pd, out)
        oe = out.eps
        for i in range(r):
            for j in range(w):
                J[i, c0 + j] = oe[i, j]


def _jvp_t(t, y, p, v, out):
    # The direction goes in partial 0 of K: with the problem's shared K the
    # right-hand side's dual specialisation is compiled once for jac and jvp.
    n = y.shape[0]
    ey = np.zeros((n, K))
    for i in range(n):
        ey[i, 0] = v[i]
    yd = dual_array_k(y, ey, 0, K)
    res = empty_dual(yd, n)
    rhs(t, yd, p, res)
    re = res.eps
    for i in range(n):
        out[i] = re[i, 0]


def _param_jvp_t(t, y, p, u, out):
    n = y.shape[0]
    m = p.shape[0]
    ep = np.zeros((m, K))
    for i in range(m):
        ep[i, 0] = u[i]
    pd = dual_array_k(p, ep, 0, K)
    res = empty_dual(pd, n)
    rhs(t, y, pd, res)
    re = res.eps
    for i in range(n):
        out[i] = re[i, 0]


def _jac_cols_t(t, y, p, c0, E):
    n = y.shape[0]
    w = min(K, n - c0)
    ey = np.zeros((n, K))
    for j in range(w):
        ey[c0 + j, j] = 1.0
    yd = dual_array_k(y, ey, 0, K)
    out = empty_dual(yd, n)
    rhs(t, yd, p, out)
    oe = out.eps
    for i in range(n):
        for j in range(K):
            E[i, j] = oe[i, j] if j < w else 0.0


def _param_jac_cols_t(t, y, p, c0, E):
    n = y.shape[0]
    m = p.shape[0]
    w = min(K, m - c0)
    ep = np.zeros((m, K))
    for j in range(w):
        ep[c0 + j, j] = 1.0
    pd = dual_array_k(p, ep, 0, K)
    out = empty_dual(pd, n)
    rhs(t, y, pd, out)
    oe = out.eps
    for i in range(n):
        for j in range(K):
            E[i, j] = oe[i, j] if j < w else 0.0


def _sparse_jac_t(t, y, p, seeds, pos, runs, loose, data):
    # seeds (nchunk, n, K): the colour groups of columns as seed directions, K per
    # sweep; pos, runs, loose: where each stored entry sits in the sweeps' results
    # (sensitivity.ad.sparsity.compression and colour_runs; see assembler)
    n = y.shape[0]
    nchunk = seeds.shape[0]
    if nchunk == 1:  # every colour in one sweep: straight from its partials
        yd = dual_array_k(y, seeds[0], 0, K)
        out = empty_dual(yd, n)
        rhs(t, yd, p, out)
        assemble(out.eps.reshape(n * K), pos, runs, loose, data)
        return
    buf = np.empty(nchunk * n * K)
    for c in range(nchunk):
        yd = dual_array_k(y, seeds[c], 0, K)
        out = empty_dual(yd, n)  # per sweep: numpy-level duals need the seed's tag
        rhs(t, yd, p, out)
        flat, base = out.eps.reshape(n * K), c * n * K
        for k in range(n * K):  # a loop: a slice copy's shape check compiles string formatting
            buf[base + k] = flat[k]
    assemble(buf, pos, runs, loose, data)


def _sparse_param_jac_t(t, y, p, seeds, pos, runs, loose, data):
    n = y.shape[0]
    nchunk = seeds.shape[0]
    if nchunk == 1:
        pd = dual_array_k(p, seeds[0], 0, K)
        out = empty_dual(pd, n)
        rhs(t, y, pd, out)
        assemble(out.eps.reshape(n * K), pos, runs, loose, data)
        return
    buf = np.empty(nchunk * n * K)
    for c in range(nchunk):
        pd = dual_array_k(p, seeds[c], 0, K)
        out = empty_dual(pd, n)  # per sweep: numpy-level duals need the seed's tag
        rhs(t, y, pd, out)
        flat, base = out.eps.reshape(n * K), c * n * K
        for k in range(n * K):  # a loop: a slice copy's shape check compiles string formatting
            buf[base + k] = flat[k]
    assemble(buf, pos, runs, loose, data)


def copy_block(dst, a, src, b, k):
    """``dst[a:a+k] = src[b:b+k]``; compiled with a constant ``k``, one vector copy."""
    dst[a : a + k] = src[b : b + k]


@overload(copy_block, prefer_literal=True, target="cpu")
def _copy_block(dst, a, src, b, k):
    if isinstance(k, types.IntegerLiteral):
        return lambda dst, a, src, b, k: vcopy(dst, a, src, b, k)
    return None


_ASSEMBLERS = {}


def assembler(K, compile=True):
    """The function that writes a compressed Jacobian's stored values, for sweeps of ``K``.

    ``assemble(flat, pos, runs, loose, data)``: ``flat`` holds the sweeps' partials
    (row i of sweep c at ``(c n + i) K``) and entry k of ``data`` is ``flat[pos[k]]``
    (:func:`sensitivity.ad.sparsity.compression`). With no ``runs`` every entry is
    gathered so. Entries ordered by colour within their rows
    (:func:`sensitivity.ad.sparsity.colour_runs`) mostly need no gather: a row whose
    colours are 0 ... w-1 holds the first w partials of its row of ``flat``. Each
    run ``(i0, i1, a, w)`` of such rows, data from position ``a``, is copied K
    partials per row, one vector load and store (two memory operations per row of
    a tridiagonal Jacobian instead of nine for the gather); the K - w partials past
    a row land in the next rows' places, written after it. ``loose`` lists the
    other entries, gathered last.
    """
    key = (K, bool(compile))
    if key in _ASSEMBLERS:
        return _ASSEMBLERS[key]

    def assemble(flat, pos, runs, loose, data):
        if runs.shape[0] == 0:
            for k in range(pos.shape[0]):
                data[k] = flat[np.uintp(pos[k])]  # unsigned: no negative-index wrap per entry
            return
        for q in range(runs.shape[0]):
            a, w = runs[q, 2], runs[q, 3]
            for i in range(runs[q, 0], runs[q, 1]):
                copy_block(data, a, flat, i * K, K)
                a += w
        for j in range(loose.shape[0]):
            k = loose[j]
            data[k] = flat[np.uintp(pos[k])]

    def assemble_py(flat, pos, runs, loose, data):  # compile=False: numpy, any order
        data[:] = flat[pos.astype(np.intp)]

    _ASSEMBLERS[key] = _njit(assemble, True) if compile else assemble_py
    return _ASSEMBLERS[key]


TEMPLATES = {
    "jac": _jac_t,
    "param_jac": _param_jac_t,
    "jvp": _jvp_t,
    "param_jvp": _param_jvp_t,
    "jac_cols": _jac_cols_t,
    "param_jac_cols": _param_jac_cols_t,
    "sparse_jac": _sparse_jac_t,
    "sparse_param_jac": _sparse_param_jac_t,
}

# ---- building kernels --------------------------------------------------------------------


def _py_func(f):
    return f.py_func if isinstance(f, Dispatcher) else f


def _hash_value(h, v, depth):
    if isinstance(v, Dispatcher) or (inspect.isfunction(v) and depth < 3):
        h.update(fingerprint(_py_func(v), depth + 1).encode())
    elif isinstance(v, np.ndarray):
        h.update(str((v.dtype, v.shape)).encode() + np.ascontiguousarray(v).tobytes())
    elif isinstance(v, (int, float, complex, str, bool, tuple)):
        h.update(repr(v).encode())


def fingerprint(f, depth=0):
    """Return a hex digest of ``f``: its source, its constant globals and closure,
    the njit functions it calls (recursively, 3 levels) and :data:`STAMP`.

    numba freezes global arrays and numbers into compiled code and does not
    track callees in its cache, so all of these take part in the kernels' cache
    names. Values it cannot hash (objects, modules) are left out.
    """
    f = _py_func(f)
    h = hashlib.sha256(STAMP.encode())
    try:
        h.update(inspect.getsource(f).encode())
    except (OSError, TypeError):
        h.update(f.__code__.co_code + repr(f.__code__.co_names).encode())
    h.update(f"{f.__module__}.{f.__qualname__}".encode())
    glb = getattr(f, "__globals__", {})
    for name in f.__code__.co_names:
        if name in glb:
            _hash_value(h, glb[name], depth)
    for cell in f.__closure__ or ():
        try:
            _hash_value(h, cell.cell_contents, depth)
        except ValueError:  # empty cell
            pass
    return h.hexdigest()[:16]


def _njit(fn, cache):
    if not cache:
        return numba.njit(fn)
    try:
        return numba.njit(cache=True)(fn)
    except RuntimeError:  # no cache locator (function defined in a string or a REPL)
        return numba.njit(fn)


def compile_rhs(f, cache=True):
    """Return ``f`` as a numba dispatcher (``cache=True`` where the source allows)."""
    if isinstance(f, Dispatcher):
        return f
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nb_errors.NumbaWarning)
        return _njit(f, cache)


def make_kernel(kind, rhs, K, compile=True, cache=True):
    """Build one derivative kernel of :data:`TEMPLATES` for the right-hand side ``rhs``.

    Parameters
    ----------
    kind : str or function
        A key of :data:`TEMPLATES`, or a template function of another module
        written the same way (globals ``rhs``, ``K``, ``np``, ``dual_array_k``,
        ``empty_dual``).
    rhs : numba dispatcher or function
        The compiled right-hand side (from :func:`compile_rhs`), or the plain
        Python function when ``compile`` is False.
    K : int
        Partials per dual sweep, 1 ... 64.
    compile : bool
        False runs the template as plain Python (numpy-level duals).
    cache : bool
        Cache the compiled kernel on disk.

    Returns
    -------
    callable
        An ``njit`` dispatcher (callable from other compiled code), or a
        Python function when ``compile`` is False.
    """
    if not 1 <= K <= KMAX:
        raise ValueError(f"K must lie in [1, {KMAX}], got {K}")
    tmpl = TEMPLATES[kind] if isinstance(kind, str) else kind
    label = kind if isinstance(kind, str) else kind.__name__.strip("_")
    g = {"np": np, "rhs": rhs, "K": K, "dual_array_k": dual_array_k, "empty_dual": empty_dual}
    g["assemble"] = assembler(K, compile)
    name = f"{_py_func(rhs).__name__}_{label}_K{K}_{fingerprint(rhs)}"
    fn = pytypes.FunctionType(tmpl.__code__, g, name)
    fn.__qualname__ = name
    fn.__module__ = __name__
    fn.__doc__ = tmpl.__doc__
    return _njit(fn, cache) if compile else fn


# ---- errors --------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_HINT = (
    "Pass compile=False to run the same function in plain Python on the numpy-level "
    "duals (slower, but any Python is allowed)."
)


def explain_compile_error(exc, what="the right-hand side"):
    """Turn a numba typing/lowering error into a short message naming the construct.

    Parameters
    ----------
    exc : numba.core.errors.NumbaError
    what : str
        Name of the function for the message.

    Returns
    -------
    RHSCompileError
        With the offending construct, its source line, and the ``compile=False`` hint.
    """
    text = _ANSI.sub("", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    skip = ("Failed in nopython", "During:", "File ", "<source elided>", "^")
    core = [ln for ln in lines if not ln.startswith(skip) and not ln.startswith("def ")]
    construct = core[0] if core else "unknown construct"
    if construct.endswith("signature:"):
        sig = next((ln for ln in lines if ln.startswith(">>>")), "")
        construct = f"{construct} {sig[3:].strip()}"
    where = ""
    for i, ln in enumerate(lines):
        if ln.startswith("File "):
            block = lines[i + 1 : i + 8]
            code = next((block[k - 1] for k in range(1, len(block)) if block[k] == "^"), "")
            where = f" at {ln[5:].rstrip(':')}: `{code}`"
            break
    hint = ""
    if "setitem" in construct and "array(float64" in construct and "Dual" in construct:
        hint = (
            " A float array cannot hold dual numbers: create scratch arrays with "
            "sensitivity.similar(y) (or similar(y, p)) or np.empty_like(y)."
        )
    elif "Dual" in construct:
        hint = " This construct is not supported on the compiled dual numbers."
    msg = f"numba cannot compile {what}: {construct}{where}.{hint} {_HINT}"
    return RHSCompileError(msg)
