"""Derivative operators on numpy functions: derivative, grad, jacobian, jvp, vjp,
hessian, hvp.

``f`` is any Python function built from numpy ufuncs of the rule table and the
supported array functions (:func:`sensitivity.ad.linalg.supported_functions`).
Forward mode runs :class:`~sensitivity.ad.dual.Dual` arrays through ``f`` (cost
grows with the number of inputs, in chunks of K partials); reverse mode records
a :class:`~sensitivity.ad.tape.Tape` and sweeps it backwards (cost grows with
the number of outputs). Calls nest: ``jacobian(lambda x: grad(f, x), x)`` is a
Hessian.
"""

from __future__ import annotations

import numpy as np

from sensitivity.ad.base import ADArray
from sensitivity.ad.core import new_tag, tag_of
from sensitivity.ad.dual import Dual
from sensitivity.ad.tape import Tape

# Partials per forward sweep when jacobian() is not given a chunk: enough to
# amortise numpy's per-call overhead, small enough that tangents (n_out, K)
# stay in cache for mid-sized problems.
DEFAULT_CHUNK = 16

MODES = ("auto", "forward", "reverse")


def derivative(f, x):
    """Return df/dx of a function of one scalar.

    Parameters
    ----------
    f : callable
        ``f(x) -> ndarray`` of any shape s.
    x : float
        The point.

    Returns
    -------
    ndarray, shape s
        The derivative, by forward mode.

    Raises
    ------
    ValueError
        If ``x`` is not a scalar (use :func:`jacobian`).
    """
    x = _as_input(x, "x")
    if np.ndim(x) != 0:
        raise ValueError(
            f"derivative: x must be a scalar, got shape {np.shape(x)}; use jacobian() for arrays"
        )
    return jvp(f, x, np.ones_like(x))[1]


def jvp(f, x, v):
    """Return ``f(x)`` and the Jacobian-vector product ``J v`` (forward mode).

    Parameters
    ----------
    f : callable
        ``f(x) -> ndarray`` of shape s_out.
    x : array_like, shape s_in
    v : array_like, shape s_in
        Tangent direction.

    Returns
    -------
    y : ndarray, shape s_out
    jv : ndarray, shape s_out
    """
    x = _as_input(x, "x")
    v = _same_shape(_as_input(v, "v"), np.shape(x), "v", "x")
    tag = new_tag()
    y = _call(f, Dual(x, v[..., None], tag))
    val, eps = _split(y, tag, 1)
    return val, eps[..., 0]


def vjp(f, x, w):
    """Return ``f(x)`` and the vector-Jacobian product ``J^T w`` (reverse mode).

    Parameters
    ----------
    f : callable
        ``f(x) -> ndarray`` of shape s_out.
    x : array_like, shape s_in
    w : array_like, shape s_out
        Cotangent (output weights).

    Returns
    -------
    y : ndarray, shape s_out
    jtw : ndarray, shape s_in
    """
    x = _as_input(x, "x")
    tape = Tape()
    xt = tape.leaf(x)
    try:
        y = _call(f, xt)
        val = y.value if tag_of(y) == tape.tag else y
        w = _same_shape(_as_input(w, "w"), np.shape(val), "w", "f(x)")
        if tag_of(y) != tape.tag:
            return val, np.zeros_like(x)
        return val, tape.backward(y, w, [xt])[0]
    finally:
        tape.clear()


def grad(f, x):
    """Return the gradient of a scalar function (reverse mode).

    Parameters
    ----------
    f : callable
        ``f(x) -> float`` (an array of size 1 is accepted).
    x : array_like, shape s

    Returns
    -------
    ndarray, shape s

    Raises
    ------
    ValueError
        If ``f`` does not return a scalar (use :func:`jacobian` or :func:`vjp`).
    """
    x = _as_input(x, "x")
    tape = Tape()
    xt = tape.leaf(x)
    try:
        y = _call(f, xt)
        if np.size(y) != 1:
            raise ValueError(
                f"grad: f must return a scalar, got shape {np.shape(y)}; use jacobian() or vjp()"
            )
        if tag_of(y) != tape.tag:
            return np.zeros_like(x)
        return tape.backward(y, np.ones_like(y.value), [xt])[0]
    finally:
        tape.clear()


def jacobian(f, x, mode="auto", chunk=None):
    """Return the Jacobian of ``f`` at ``x``.

    Parameters
    ----------
    f : callable
        ``f(x) -> ndarray`` of shape s_out.
    x : array_like, shape s_in
    mode : {"auto", "forward", "reverse"}
        ``"forward"`` costs one dual sweep per ``chunk`` inputs, ``"reverse"``
        one backward sweep per output; ``"auto"`` evaluates ``f`` once and picks
        forward when ``x.size <= f(x).size``.
    chunk : int, optional
        Partials per forward sweep (default ``min(x.size, 16)``).

    Returns
    -------
    ndarray, shape s_out + s_in
    """
    x = _as_input(x, "x")
    if mode not in MODES:
        raise ValueError(f"jacobian: mode must be one of {MODES}, got {mode!r}")
    if chunk is not None and (not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise ValueError(f"jacobian: chunk must be a positive integer, got {chunk!r}")
    if mode == "auto":
        mode = "forward" if np.size(x) <= np.size(_call(f, x)) else "reverse"
    if mode == "forward":
        return _jacobian_forward(f, x, chunk)[1]
    return _jacobian_reverse(f, x)


def value_and_jacobian(f, x, chunk=None):
    """Return ``f(x)`` and its Jacobian from the same forward sweeps.

    Parameters
    ----------
    f : callable
        ``f(x) -> ndarray`` of shape s_out.
    x : array_like, shape s_in
    chunk : int, optional
        Partials per sweep (default ``min(x.size, 16)``).

    Returns
    -------
    y : ndarray, shape s_out
    J : ndarray, shape s_out + s_in
    """
    x = _as_input(x, "x")
    if chunk is not None and (not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise ValueError(f"value_and_jacobian: chunk must be a positive integer, got {chunk!r}")
    return _jacobian_forward(f, x, chunk)


def hessian(f, x):
    """Return the Hessian of a scalar function (forward over reverse).

    Parameters
    ----------
    f : callable
        ``f(x) -> float``.
    x : array_like, shape s

    Returns
    -------
    ndarray, shape s + s
    """
    return jacobian(lambda z: grad(f, z), x, mode="forward")


def hvp(f, x, v):
    """Return the Hessian-vector product ``H v`` of a scalar function.

    One forward sweep over one reverse sweep: the cost is a small multiple of
    a gradient, whatever the size of ``x``.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``.
    x, v : array_like, shape s

    Returns
    -------
    ndarray, shape s
    """
    return jvp(lambda z: grad(f, z), x, v)[1]


# ---- helpers ------------------------------------------------------------------------------


def _jacobian_forward(f, x, chunk):
    n = np.size(x)
    K = chunk or max(1, min(n, DEFAULT_CHUNK))
    cols, val = [], None
    for start in range(0, max(n, 1), K):
        k = min(K, n - start)
        seeds = np.zeros((n, k))
        seeds[start + np.arange(k), np.arange(k)] = 1.0
        tag = new_tag()
        y = _call(f, Dual(x, seeds.reshape(np.shape(x) + (k,)), tag))
        val, eps = _split(y, tag, k)
        cols.append(np.reshape(eps, (np.size(val), k)))
    J = np.concatenate(cols, axis=1)
    return val, np.reshape(J, np.shape(val) + np.shape(x))


def _jacobian_reverse(f, x):
    tape = Tape()
    xt = tape.leaf(x)
    try:
        y = _call(f, xt)
        val = y.value if tag_of(y) == tape.tag else y
        m = np.size(val)
        if tag_of(y) != tape.tag:
            return np.zeros(np.shape(val) + np.shape(x))
        rows = []
        for i in range(m):
            e = np.zeros(m)
            e[i] = 1.0
            rows.append(np.reshape(tape.backward(y, e.reshape(np.shape(val)), [xt])[0], (-1,)))
        return np.reshape(np.stack(rows), np.shape(val) + np.shape(x))
    finally:
        tape.clear()


def _as_input(x, name):
    """Validate a differentiation input: a real or complex number or array."""
    if isinstance(x, ADArray):
        return x  # an enclosing differentiation's array: nesting
    try:
        a = np.asarray(x)
    except Exception as err:  # e.g. ragged nested lists
        raise TypeError(f"{name} must be a numeric array or number: {err}") from None
    if a.dtype.kind in "biu":
        return a.astype(np.float64)
    if a.dtype.kind not in "fc":
        raise TypeError(
            f"{name} must be a real or complex numeric array or number; got "
            f"{type(x).__name__} with dtype {a.dtype}"
        )
    return a


def _same_shape(a, shape, name, other):
    if np.shape(a) != tuple(shape):
        raise ValueError(
            f"{name} must have the shape of {other}, {tuple(shape)}; got {np.shape(a)}"
        )
    return a


def _call(f, x):
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    y = f(x)
    if not isinstance(y, (ADArray, np.ndarray, np.generic, float, int, complex)):
        raise TypeError(f"f must return a numpy array or a number, got {type(y).__name__}")
    return y


def _split(y, tag, K):
    """Value and tangents (shape + (K,)) of an output; zero tangents if constant."""
    if tag_of(y) == tag:
        return y.val, y.eps
    return y, np.zeros_like(y, dtype=float, shape=np.shape(y) + (K,))
