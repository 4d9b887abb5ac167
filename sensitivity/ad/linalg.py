"""Structural array operations with explicit jvp/vjp pairs, shared by all modes.

Elementwise primitives live in :mod:`sensitivity.ad.rules`. This module holds
the rest of what the array types support through ``__array_function__``:

* :class:`Op`: a primitive structural operation (``sum``, ``reshape``,
  ``concatenate``, ``matmul``, ``linalg.solve``, indexing, ...) with a primal
  ``f(*arrays, **params)``, a forward rule and its transpose ``vjp``. The two
  are checked against each other by the dot-product test in the tests.
* composites: numpy functions written in terms of other supported functions
  (``hstack``, ``dot``, ``outer``, ``max``, ``linalg.norm``, ...), which are
  therefore differentiable in every mode without rules of their own.
* value-only functions (``shape``, ``argmax``, ``allclose``, ...), evaluated on
  the primal values.

Tangents carry the ``K`` partials on a trailing axis (shape ``s + (K,)``);
cotangents have the shape of the primal (one reverse sweep per cotangent).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sensitivity.ad.core import tag_of


def primal(x):
    """Strip every differentiation layer from ``x`` and return its plain value."""
    while tag_of(x):
        x = x.val if hasattr(x, "eps") else x.value
    return x


@dataclass(frozen=True)
class Op:
    """A structural primitive.

    Parameters
    ----------
    name : str
        Name used in error messages and debug mode.
    f : callable
        ``f(*arrays, **params)``: the primal on values.
    split : callable
        Binds the numpy call's ``(*args, **kwargs)`` and returns
        ``(arrays, params)``: the differentiable array inputs (a list) and the
        static parameters (a dict).
    vjp : callable
        ``vjp(g, y, xs, params)`` returns one cotangent per array input (or
        ``None`` for inputs that are not differentiated); ``g`` has the shape
        of ``y``.
    kind : {"linear", "multilinear", "custom"}
        ``"linear"``: ``f`` is jointly linear in its array inputs, so the
        tangent is ``f`` applied to the tangents (zeros for constants).
        ``"multilinear"``: linear in each input separately (product rule).
        ``"custom"``: ``jvp`` is given.
    jvp : callable, optional
        ``jvp(ts, y, xs, params)`` with ``ts[i]`` the tangent of input ``i``
        (trailing axis K) or ``None``; returns the tangent of ``y``.
    """

    name: str
    f: Callable
    split: Callable
    vjp: Callable
    kind: str = "linear"
    jvp: Callable | None = None

    def tangent(self, ts, y, xs, params):
        """Return the tangent of ``y`` (shape ``y.shape + (K,)``)."""
        if self.kind == "custom":
            return self.jvp(ts, y, xs, params)
        K = next(t for t in ts if t is not None).shape[-1]
        cols = []
        for k in range(K):
            if self.kind == "linear":
                args = [t[..., k] if t is not None else np.zeros_like(x) for t, x in zip(ts, xs)]
                cols.append(self.f(*args, **params))
            else:
                terms = [
                    self.f(*xs[:i], t[..., k], *xs[i + 1 :], **params)
                    for i, t in enumerate(ts)
                    if t is not None
                ]
                cols.append(sum(terms[1:], terms[0]))
        return np.stack(cols, axis=-1)


def unbroadcast(g, shape):
    """Sum ``g`` over the axes that broadcasting added to an array of ``shape``."""
    if np.shape(g) == tuple(shape):
        return g
    extra = np.ndim(g) - len(shape)
    if extra:
        g = np.sum(g, axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and np.shape(g)[i] != 1)
    if axes:
        g = np.sum(g, axis=axes, keepdims=True)
    return g


def _binder(signature_of, arrays, keep=None):
    """Make a ``split`` from a model signature naming its array parameters.

    Parameters other than ``arrays`` and ``keep`` must keep their defaults
    (``out=``, ``dtype=``, ``order=``...), else a TypeError names them.
    """
    sig = inspect.signature(signature_of)

    def split(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        params = dict(bound.arguments)
        found = []
        for name in arrays:
            value = params.pop(name)
            if name == "arrays":  # a sequence argument (concatenate, stack)
                found.extend(value)
            else:
                found.append(value)
        for name in list(params):
            if keep is not None and name not in keep:
                value, default = params.pop(name), sig.parameters[name].default
                if value is not default and not (isinstance(value, str) and value == default):
                    raise TypeError(
                        f"the {name}= argument is not supported on differentiated arrays"
                    )
        return found, params

    return split


def axes_of(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    return tuple(a % ndim for a in axis)


# ---- reductions and shape changes ------------------------------------------------------


def _sum_f(a, axis=None, keepdims=False):
    return np.sum(a, axis=axis, keepdims=keepdims)


def _sum_vjp(g, y, xs, p):
    shape = np.shape(xs[0])
    if not p["keepdims"]:
        g = np.reshape(
            g, tuple(1 if i in axes_of(p["axis"], len(shape)) else n for i, n in enumerate(shape))
        )
    return [np.broadcast_to(g, shape) * 1.0]


def _reshape_f(a, shape):
    return np.reshape(a, shape)


def _to_input_shape(g, y, xs, p):
    return [np.reshape(g, np.shape(xs[0]))]


def _transpose_f(a, axes=None):
    return np.transpose(a, axes)


def _transpose_vjp(g, y, xs, p):
    axes = p["axes"]
    return [np.transpose(g, None if axes is None else np.argsort(axes))]


def _broadcast_f(a, shape):
    return np.broadcast_to(a, shape) * 1.0  # a copy: tangents must be writable


def _broadcast_vjp(g, y, xs, p):
    return [unbroadcast(g, np.shape(xs[0]))]


def _concat_f(*arrays, axis=0):
    return np.concatenate(arrays, axis=axis)


def _concat_vjp(g, y, xs, p):
    axis = p["axis"]
    if axis is None:
        g, axis = np.ravel(g), 0
    axis = axes_of(axis, np.ndim(g))[0]
    out, start = [], 0
    for x in xs:
        size = np.size(x) if p["axis"] is None else np.shape(x)[axis]
        index = (slice(None),) * axis + (slice(start, start + size),)
        out.append(np.reshape(g[index], np.shape(x)))  # slicing works on nested duals too
        start += size
    return out


def _stack_f(*arrays, axis=0):
    return np.stack(arrays, axis=axis)


def _stack_vjp(g, y, xs, p):
    g = np.moveaxis(g, p["axis"], 0)
    return [g[i] for i in range(len(xs))]


def _cumsum_f(a, axis=None):
    return np.cumsum(a, axis=axis)


def _cumsum_vjp(g, y, xs, p):
    axis = p["axis"]
    if axis is None:
        return [np.reshape(np.flip(np.cumsum(np.flip(g))), np.shape(xs[0]))]
    return [np.flip(np.cumsum(np.flip(g, axis), axis=axis), axis)]


def _getitem_f(a, index):
    return a[index]


def _getitem_vjp(g, y, xs, p):
    out = np.zeros_like(g, shape=np.shape(xs[0]))
    np.add.at(out, p["index"], g)  # scatter-add: repeated fancy indices accumulate
    return [out]


def _flip_f(m, axis=None):
    return np.flip(m, axis)


def _flip_vjp(g, y, xs, p):
    return [np.flip(g, p["axis"])]


def _roll_f(a, shift, axis=None):
    return np.roll(a, shift, axis)


def _roll_vjp(g, y, xs, p):
    return [np.roll(g, np.negative(p["shift"]), p["axis"])]


def _copy_f(a):
    return np.copy(a)  # dispatches again when ``a`` is a nested dual


# ---- products and linear solves ---------------------------------------------------------


def _matmul_vjp(g, y, xs, p):
    a, b = xs
    if np.ndim(a) == 1 and np.ndim(b) == 1:
        return [g * b, g * a]
    if np.ndim(b) == 1:
        return [unbroadcast(g[..., :, None] * b, np.shape(a)), np.swapaxes(a, -1, -2) @ g]
    if np.ndim(a) == 1:
        return [b @ g, unbroadcast(a[:, None] * g[..., None, :], np.shape(b))]
    return [
        unbroadcast(g @ np.swapaxes(b, -1, -2), np.shape(a)),
        unbroadcast(np.swapaxes(a, -1, -2) @ g, np.shape(b)),
    ]


def _matmul_jvp(ts, y, xs, p):
    a, b = xs
    ta, tb = ts
    out = None
    if tb is not None:
        # K partials of b ride along as extra columns of one product.
        if np.ndim(b) == 1:
            out = np.matmul(a, tb)
        else:
            out = np.stack([np.matmul(a, tb[..., k]) for k in range(tb.shape[-1])], axis=-1)
    if ta is not None:
        K = ta.shape[-1]
        term = np.stack([np.matmul(ta[..., k], b) for k in range(K)], axis=-1)
        out = term if out is None else out + term
    return out


def _solve_f(a, b):
    return np.linalg.solve(a, b)


def _solve_jvp(ts, y, xs, p):
    a, b = xs
    ta, tb = ts
    vec = np.ndim(b) == 1
    K = next(t for t in ts if t is not None).shape[-1]
    rhs = tb if tb is not None else 0.0
    if ta is not None:
        # d x = A^-1 (d b - d A x)
        prod = [ta[..., k] @ y for k in range(K)]
        rhs = rhs - np.stack(prod, axis=-1)
    if isinstance(rhs, float):
        rhs = np.zeros(np.shape(y) + (K,))
    if vec:
        return np.linalg.solve(a, rhs)
    n, r = np.shape(y)
    return np.reshape(np.linalg.solve(a, np.reshape(rhs, (n, r * K))), (n, r, K))


def _solve_vjp(g, y, xs, p):
    a, b = xs
    bbar = np.linalg.solve(np.swapaxes(a, -1, -2), g)
    if np.ndim(b) == 1:
        abar = -(bbar[:, None] * y[None, :])
    else:
        abar = -(bbar @ np.swapaxes(y, -1, -2))
    return [abar, bbar]


# ---- fast tangents of the linear ops: act on all K partials in one call ---------------


def tangent_index(index):
    """Extend an index of the primal to its tangent, whose last axis holds K."""
    index = index if isinstance(index, tuple) else (index,)
    if any(i is Ellipsis for i in index):
        return index + (slice(None),)
    return index + (Ellipsis, slice(None))


def _fill_tangents(ts, xs):
    K = next(t for t in ts if t is not None).shape[-1]
    return [
        t if t is not None else np.zeros_like(x, shape=np.shape(x) + (K,)) for t, x in zip(ts, xs)
    ]


def _getitem_jvp(ts, y, xs, p):
    return ts[0][tangent_index(p["index"])]


def _reshape_jvp(ts, y, xs, p):
    return np.reshape(ts[0], np.shape(y) + ts[0].shape[-1:])


def _sum_jvp(ts, y, xs, p):
    return np.sum(ts[0], axis=axes_of(p["axis"], np.ndim(xs[0])), keepdims=p["keepdims"])


def _transpose_jvp(ts, y, xs, p):
    nd = np.ndim(xs[0])
    axes = tuple(range(nd))[::-1] if p["axes"] is None else axes_of(p["axes"], nd)
    return np.transpose(ts[0], axes + (nd,))


def _broadcast_jvp(ts, y, xs, p):
    return np.broadcast_to(ts[0], np.shape(y) + ts[0].shape[-1:]) * 1.0


def _concat_jvp(ts, y, xs, p):
    ts = _fill_tangents(ts, xs)
    if p["axis"] is None:
        return np.concatenate([np.reshape(t, (-1, t.shape[-1])) for t in ts], axis=0)
    return np.concatenate(ts, axis=axes_of(p["axis"], np.ndim(xs[0]))[0])


def _stack_jvp(ts, y, xs, p):
    return np.stack(_fill_tangents(ts, xs), axis=axes_of(p["axis"], np.ndim(y))[0])


def _cumsum_jvp(ts, y, xs, p):
    t = ts[0]
    if p["axis"] is None:
        return np.cumsum(np.reshape(t, (-1, t.shape[-1])), axis=0)
    return np.cumsum(t, axis=axes_of(p["axis"], np.ndim(xs[0]))[0])


def _sig_sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    pass


def _sig_a_shape(a, shape=None, order="C", *, newshape=None, copy=None):
    pass


def _sig_reshape_split(*args, **kwargs):
    arrays, params = _binder(_sig_a_shape, ["a"], ("shape", "newshape"))(*args, **kwargs)
    shape = params["shape"] if params["shape"] is not None else params["newshape"]
    return arrays, {"shape": shape}


def _seq_split(*args, **kwargs):
    """Split for concatenate/stack: a sequence of arrays and an axis."""
    return _binder(_sig_seq, ["arrays"], ("axis",))(*args, **kwargs)


def _sig_seq(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    pass


OPS = {
    "sum": Op(
        "sum",
        _sum_f,
        _binder(_sig_sum, ["a"], ("axis", "keepdims")),
        _sum_vjp,
        "custom",
        _sum_jvp,
    ),
    "reshape": Op(
        "reshape", _reshape_f, _sig_reshape_split, _to_input_shape, "custom", _reshape_jvp
    ),
    "transpose": Op(
        "transpose",
        _transpose_f,
        _binder(lambda a, axes=None: None, ["a"]),
        _transpose_vjp,
        "custom",
        _transpose_jvp,
    ),
    "broadcast_to": Op(
        "broadcast_to",
        _broadcast_f,
        _binder(lambda array, shape, subok=False: None, ["array"], ("shape",)),
        _broadcast_vjp,
        "custom",
        _broadcast_jvp,
    ),
    "concatenate": Op("concatenate", _concat_f, _seq_split, _concat_vjp, "custom", _concat_jvp),
    "stack": Op("stack", _stack_f, _seq_split, _stack_vjp, "custom", _stack_jvp),
    "cumsum": Op(
        "cumsum",
        _cumsum_f,
        _binder(lambda a, axis=None, dtype=None, out=None: None, ["a"], ("axis",)),
        _cumsum_vjp,
        "custom",
        _cumsum_jvp,
    ),
    "getitem": Op(
        "getitem",
        _getitem_f,
        lambda a, index: ([a], {"index": index}),
        _getitem_vjp,
        "custom",
        _getitem_jvp,
    ),
    "flip": Op("flip", _flip_f, _binder(lambda m, axis=None: None, ["m"]), _flip_vjp),
    "roll": Op("roll", _roll_f, _binder(lambda a, shift, axis=None: None, ["a"]), _roll_vjp),
    "copy": Op(
        "copy",
        _copy_f,
        _binder(lambda a, order="K", subok=False: None, ["a"], ()),
        lambda g, y, xs, p: [g],
        "custom",
        lambda ts, y, xs, p: np.copy(ts[0]),
    ),
    "matmul": Op(
        "matmul",
        np.matmul,
        lambda a, b, **kw: _no_kwargs("matmul", kw, [a, b]),
        _matmul_vjp,
        "custom",
        _matmul_jvp,
    ),
    "solve": Op(
        "linalg.solve",
        _solve_f,
        _binder(lambda a, b: None, ["a", "b"]),
        _solve_vjp,
        "custom",
        _solve_jvp,
    ),
}


def _no_kwargs(name, kwargs, arrays):
    if kwargs:
        raise TypeError(
            f"{name}: arguments {sorted(kwargs)} are not supported on differentiated arrays"
        )
    return arrays, {}
