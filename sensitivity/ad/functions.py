"""The numpy functions the differentiated array types support, and how.

``FUNCTIONS`` maps each numpy function to one of

* ``("op", Op)``: a structural primitive of :mod:`sensitivity.ad.linalg`;
* ``("rule", name)``: an elementwise rule of :mod:`sensitivity.ad.rules`
  (``where``, ``clip``);
* ``("composite", fn)``: written with other supported functions, hence
  differentiable in every mode with no rule of its own;
* ``("value", fn)``: evaluated on primal values (no derivative flows);
* ``("like", fill)``: ``zeros_like`` and friends, made by the array type.
"""

from __future__ import annotations

import numpy as np

from sensitivity.ad.linalg import OPS, axes_of, primal

# ---- composites: numpy functions written with the supported ones ---------------------


def _atleast_nd(nd):
    def inner(*arys):
        # numpy pads 1-D to (1, n) for 2-D: new axes go in front
        out = [
            np.reshape(a, (1,) * (nd - np.ndim(a)) + np.shape(a)) if np.ndim(a) < nd else a
            for a in arys
        ]
        return out[0] if len(out) == 1 else out

    return inner


def _hstack(tup, *, dtype=None, casting="same_kind"):
    arrs = [np.atleast_1d(a) for a in tup]
    return np.concatenate(arrs, axis=0 if np.ndim(arrs[0]) == 1 else 1)


def _vstack(tup, *, dtype=None, casting="same_kind"):
    return np.concatenate([np.atleast_2d(a) for a in tup], axis=0)


def _dot(a, b, out=None):
    if out is not None:
        raise TypeError("dot: the out= argument is not supported on differentiated arrays")
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return a * b
    if np.ndim(a) > 2 or np.ndim(b) > 2:
        raise TypeError(
            "dot: arrays of more than 2 dimensions are not supported on "
            "differentiated arrays; use matmul or tensordot-free reshapes"
        )
    return np.matmul(a, b)


def _inner(a, b):
    if np.ndim(a) > 1 or np.ndim(b) > 1:
        raise TypeError("inner: only 1-D arrays are supported on differentiated arrays")
    return np.sum(a * b)


def _outer(a, b, out=None):
    return np.reshape(a, (-1, 1)) * np.reshape(b, (1, -1))


def _mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    shape = np.shape(a)
    count = int(np.prod([shape[i] for i in axes_of(axis, len(shape))]))
    return np.sum(a, axis=axis, keepdims=keepdims) / count


def _var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kw):
    dev = a - np.mean(a, axis=axis, keepdims=True)
    shape = np.shape(a)
    count = int(np.prod([shape[i] for i in axes_of(axis, len(shape))]))
    return np.sum(dev * dev, axis=axis, keepdims=keepdims) / (count - ddof)


def _std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kw):
    return np.sqrt(_var(a, axis=axis, ddof=ddof, keepdims=keepdims))


def _ravel(a, order="C"):
    return np.reshape(a, (-1,))


def _squeeze(a, axis=None):
    shape = np.shape(a)
    axes = [i for i, n in enumerate(shape) if n == 1] if axis is None else axes_of(axis, len(shape))
    return np.reshape(a, tuple(n for i, n in enumerate(shape) if i not in axes))


def _expand_dims(a, axis):
    shape = list(np.shape(a))
    axes = sorted(axes_of(axis, len(shape) + (1 if np.ndim(axis) == 0 else len(axis))))
    for ax in axes:
        shape.insert(ax, 1)
    return np.reshape(a, tuple(shape))


def _swapaxes(a, axis1, axis2):
    axes = list(range(np.ndim(a)))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return np.transpose(a, axes)


def _moveaxis(a, source, destination):
    order = [i for i in range(np.ndim(a)) if i != source % np.ndim(a)]
    order.insert(destination % np.ndim(a), source % np.ndim(a))
    return np.transpose(a, order)


def _extreme(arg):
    def inner(a, axis=None, out=None, keepdims=False, initial=None, where=None):
        # Pick the first extreme entry exactly (a one-hot `where`, not a weighted
        # sum), so the value is bitwise numpy's and the derivative a subgradient.
        v = primal(a)
        onehot = np.zeros(np.shape(v), dtype=bool)
        if axis is None:
            onehot.flat[arg(v)] = True
        else:
            np.put_along_axis(onehot, np.expand_dims(arg(v, axis=axis), axis), True, axis)
        return np.sum(np.where(onehot, a, 0.0), axis=axis, keepdims=keepdims)

    return inner


def _norm(x, ord=None, axis=None, keepdims=False):
    if ord not in (None, 2, "fro") or (ord == 2 and np.ndim(x) > 1 and axis is None):
        raise TypeError(
            "linalg.norm: only the 2-norm of vectors and the Frobenius norm are "
            "supported on differentiated arrays"
        )
    return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))


def _diff(a, n=1, axis=-1, prepend=None, append=None):
    if prepend is not None or append is not None:
        raise TypeError("diff: prepend/append are not supported on differentiated arrays")
    for _ in range(n):
        hi = [slice(None)] * np.ndim(a)
        lo = [slice(None)] * np.ndim(a)
        hi[axis], lo[axis] = slice(1, None), slice(None, -1)
        a = a[tuple(hi)] - a[tuple(lo)]
    return a


def _trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    if offset or np.ndim(a) != 2:
        raise TypeError("trace: only the main diagonal of a 2-D array is supported")
    i = np.arange(min(np.shape(a)))
    return np.sum(a[i, i])


def _diag(v, k=0):
    if k:
        raise TypeError("diag: only k=0 is supported on differentiated arrays")
    if np.ndim(v) == 2:
        i = np.arange(min(np.shape(v)))
        return v[i, i]
    n = np.shape(v)[0]
    out = np.zeros_like(v, shape=(n, n))
    out[np.arange(n), np.arange(n)] = v
    return out


def _inv(a):
    return np.linalg.solve(a, np.eye(np.shape(a)[-1]))


def _sort(a, axis=-1, kind=None, order=None, *, stable=None):
    if np.ndim(a) != 1:
        raise TypeError("sort: only 1-D arrays are supported on differentiated arrays")
    return a[np.argsort(primal(a), kind=kind)]


def _trapezoid(y, x=None, dx=1.0, axis=-1):
    hi = [slice(None)] * np.ndim(y)
    lo = [slice(None)] * np.ndim(y)
    hi[axis], lo[axis] = slice(1, None), slice(None, -1)
    h = dx if x is None else _diff(x)
    return np.sum(h * (y[tuple(hi)] + y[tuple(lo)]) * 0.5, axis=axis)


COMPOSITES = {
    np.atleast_1d: _atleast_nd(1),
    np.atleast_2d: _atleast_nd(2),
    np.hstack: _hstack,
    np.vstack: _vstack,
    np.dot: _dot,
    np.inner: _inner,
    np.outer: _outer,
    np.mean: _mean,
    np.var: _var,
    np.std: _std,
    np.ravel: _ravel,
    np.squeeze: _squeeze,
    np.expand_dims: _expand_dims,
    np.swapaxes: _swapaxes,
    np.moveaxis: _moveaxis,
    np.max: _extreme(np.argmax),
    np.min: _extreme(np.argmin),
    np.amax: _extreme(np.argmax),
    np.amin: _extreme(np.argmin),
    np.linalg.norm: _norm,
    np.diff: _diff,
    np.trace: _trace,
    np.diag: _diag,
    np.linalg.inv: _inv,
    np.sort: _sort,
    np.trapezoid: _trapezoid,
}

# Evaluated on the primal values: no derivative flows through these.
VALUE_FUNCTIONS = frozenset(
    {
        np.shape,
        np.ndim,
        np.size,
        np.argmax,
        np.argmin,
        np.argsort,
        np.nonzero,
        np.count_nonzero,
        np.isclose,
        np.allclose,
        np.array_equal,
        np.iscomplexobj,
        np.isrealobj,
        np.any,
        np.all,
        np.round,
        np.around,
        np.searchsorted,
        np.may_share_memory,
        np.shares_memory,
        np.result_type,
    }
)

# numpy function -> ("op", Op) | ("rule", name) | ("composite", fn) | ("like", name)
FUNCTIONS = {
    np.sum: ("op", OPS["sum"]),
    np.reshape: ("op", OPS["reshape"]),
    np.transpose: ("op", OPS["transpose"]),
    np.broadcast_to: ("op", OPS["broadcast_to"]),
    np.concatenate: ("op", OPS["concatenate"]),
    np.stack: ("op", OPS["stack"]),
    np.cumsum: ("op", OPS["cumsum"]),
    np.flip: ("op", OPS["flip"]),
    np.roll: ("op", OPS["roll"]),
    np.copy: ("op", OPS["copy"]),
    np.matmul: ("op", OPS["matmul"]),
    np.linalg.solve: ("op", OPS["solve"]),
    np.where: ("rule", "where"),
    np.clip: ("rule", "clip"),
    np.zeros_like: ("like", 0.0),
    np.ones_like: ("like", 1.0),
    np.empty_like: ("like", 0.0),
    np.full_like: ("like", None),
}
FUNCTIONS.update({f: ("composite", g) for f, g in COMPOSITES.items()})
FUNCTIONS.update({f: ("value", f) for f in VALUE_FUNCTIONS})


def supported_functions():
    """Return the sorted names of the numpy functions the array types support."""
    names = {getattr(f, "__name__", str(f)) for f in FUNCTIONS}
    return sorted(names)
