"""Forward mode over numpy arrays: dual arrays with K partials.

A :class:`Dual` holds a value ``val`` of shape ``s`` and partials ``eps`` of
shape ``s + (K,)``: ``eps[..., k]`` is the derivative of ``val`` along the k-th
seed direction. Every ufunc of the rule table applies

    eps_y = sum_i d_i(y, *x)[..., None] * eps_i

(:mod:`sensitivity.ad.rules`, NaN-safe), and the structural operations apply
their forward rules (:mod:`sensitivity.ad.linalg`).

Nesting: each differentiation call tags its duals with a fresh tag. A dual's
``val`` and ``eps`` may themselves be duals of a lower (enclosing) tag, which
gives higher derivatives without perturbation confusion.
"""

from __future__ import annotations

import numpy as np

from sensitivity.ad.base import ADArray
from sensitivity.ad.core import check_finite, debugging, new_tag, tag_of
from sensitivity.ad.linalg import tangent_index
from sensitivity.ad.rules import safe_mul


class Dual(ADArray):
    """An array of values with K partial derivatives each.

    Parameters
    ----------
    val : ndarray, shape s
        The values (or duals of an enclosing differentiation).
    eps : ndarray, shape s + (K,)
        The partials.
    tag : int, optional
        Differentiation tag (:func:`sensitivity.ad.core.new_tag`); a fresh one
        by default.

    Examples
    --------
    >>> import numpy as np
    >>> x = Dual(np.array([1.0, 2.0]), np.eye(2))
    >>> y = np.sin(x) * x
    >>> y.eps.shape
    (2, 2)
    """

    __slots__ = ("val", "eps", "_ad_tag")

    def __init__(self, val, eps, tag=None):
        val = _as_float(val)
        eps = _as_float(eps)
        if np.shape(eps)[:-1] != np.shape(val) or np.ndim(eps) != np.ndim(val) + 1:
            raise ValueError(
                f"Dual: eps must have shape val.shape + (K,) = {np.shape(val)} + (K,); "
                f"got {np.shape(eps)}"
            )
        self.val = val
        self.eps = eps
        self._ad_tag = new_tag() if tag is None else tag

    @property
    def _value(self):
        return self.val

    @property
    def K(self):
        """Number of partials carried (int)."""
        return np.shape(self.eps)[-1]

    def __repr__(self):
        return f"Dual(val={self.val!r}, eps=<shape {np.shape(self.eps)}>, tag={self._ad_tag})"

    # ---- ADArray contract ---------------------------------------------------------------

    @classmethod
    def _apply_rule(cls, rule, inputs, tag):
        xs = [x.val if tag_of(x) == tag else x for x in inputs]
        y = rule.f(*xs)
        eps = None
        K = None
        for i, x in enumerate(inputs):
            if tag_of(x) != tag or rule.d[i] is None:
                continue
            if K is not None and x.K != K:
                raise ValueError(
                    f"{rule.name}: operands carry {K} and {x.K} partials; "
                    "duals of one differentiation must agree"
                )
            K = x.K
            # inf partials times zero tangents are expected (NaN-safe convention)
            with np.errstate(divide="ignore", invalid="ignore"):
                term = safe_mul(_column(rule.d[i](y, *xs)), x.eps)
            if eps is None:
                eps = term
            elif isinstance(eps, np.ndarray) and eps.shape == np.shape(term):
                eps += term  # in place: a fresh temporary costs page faults at n = 1e6
            else:
                eps = eps + term
        if np.shape(eps)[:-1] != np.shape(y):
            eps = np.copy(np.broadcast_to(eps, np.shape(y) + (K,)))
        if debugging():
            check_finite(rule.name, "value", y)
            check_finite(rule.name, "derivative", eps)
        return Dual(y, eps, tag)

    @classmethod
    def _apply_op(cls, op, arrays, params, tag):
        xs = [a.val if tag_of(a) == tag else a for a in arrays]
        ts = [a.eps if tag_of(a) == tag else None for a in arrays]
        y = op.f(*xs, **params)
        eps = op.tangent(ts, y, xs, params)
        if debugging():
            check_finite(op.name, "value", y)
            check_finite(op.name, "derivative", eps)
        return Dual(y, eps, tag)

    def _like(self, fill, shape, dtype):
        val = np.full_like(self.val, fill, dtype=dtype, shape=shape)
        return Dual(
            val, np.zeros_like(self.eps, dtype=dtype, shape=tuple(shape) + (self.K,)), self._ad_tag
        )

    def _assign(self, result):
        if tag_of(result) != self._ad_tag:
            self.val[...] = result
            self.eps[...] = 0.0
        else:
            self.val[...] = result.val
            self.eps[...] = result.eps

    def __setitem__(self, index, value):
        tag = tag_of(value)
        if tag > self._ad_tag:
            raise TypeError(
                "cannot store a value that carries derivatives of an inner differentiation "
                "into this dual array; create the array with sensitivity.similar()"
            )
        if tag == self._ad_tag:
            if value.K != self.K:
                raise ValueError(f"cannot store {value.K} partials into an array of {self.K}")
            self.val[index] = value.val
            self.eps[tangent_index(index)] = value.eps
        else:
            self.val[index] = value
            self.eps[tangent_index(index)] = 0.0

    def _scatter_add(self, index, values):
        if tag_of(values) == self._ad_tag:
            np.add.at(self.val, index, values.val)
            np.add.at(self.eps, tangent_index(index), values.eps)
        else:
            np.add.at(self.val, index, values)


def _as_float(a):
    if tag_of(a):
        return a
    a = np.asarray(a)
    if a.dtype.kind in "biu":
        return a.astype(np.float64)
    if a.dtype.kind not in "fc":
        raise TypeError(f"Dual: expected a real or complex numeric array, got dtype {a.dtype}")
    return a


def _column(d):
    """Append the K axis to a partial so it broadcasts against the tangents."""
    # reshape, not d[..., None]: the new axis then gets a non-zero stride and
    # numpy's loops stay long (4-5x faster at K = 1, measured).
    return np.reshape(d, np.shape(d) + (1,)) if np.ndim(d) else d


def similar(x, shape=None):
    """Return a zero-filled scratch array that can hold what ``x`` holds.

    Inside differentiated code, a scratch array created with ``np.empty(n)``
    cannot store duals. ``similar(y)`` returns a plain float array when ``y``
    is plain and a zero dual array with the same tags and partial count when
    ``y`` is a dual (numba kernels get the same through ``np.empty_like``).

    Parameters
    ----------
    x : ndarray or Dual
        Template.
    shape : tuple of int, optional
        Shape of the result; ``x.shape`` by default.

    Returns
    -------
    ndarray or Dual, shape ``shape``
    """
    return np.zeros_like(x, shape=shape)
