"""The numpy protocol shared by the dual arrays and the tape's tracked arrays.

:class:`ADArray` routes numpy ufuncs (``__array_ufunc__``) and array functions
(``__array_function__``) to the rule table (:mod:`sensitivity.ad.rules`) and
to the structural operations (:mod:`sensitivity.ad.linalg`). A subclass says
what applying a rule or an operation means in its mode: the duals propagate
tangents at once, the tape records a node for the backward sweep.

An operation is handled by the input with the highest differentiation tag;
every object with a lower tag (including arrays of an enclosing
differentiation) is a constant to it (:mod:`sensitivity.ad.core`).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from sensitivity.ad.core import top_tag
from sensitivity.ad.functions import FUNCTIONS, supported_functions
from sensitivity.ad.linalg import OPS, primal
from sensitivity.ad.rules import RULES, VALUE_ONLY_UFUNCS, ufunc_rule


def flat_args(args):
    """Yield ``args`` with lists and tuples opened one level (concatenate's input)."""
    for a in args:
        if isinstance(a, (list, tuple)):
            yield from a
        else:
            yield a


class ADArray(NDArrayOperatorsMixin):
    """Base class of :class:`~sensitivity.ad.dual.Dual` and the tape's ``Tracked``.

    Contract for subclasses:

    1. ``_value`` returns the array one level down (the primal at this tag).
    2. ``_apply_rule(rule, inputs, tag)`` applies an elementwise rule.
    3. ``_apply_op(op, arrays, params, tag)`` applies a structural :class:`Op`.
    4. ``_like(fill, shape, dtype)`` makes a constant array of this type.
    5. ``_assign(result)`` stores ``result`` into ``self`` (``out=`` and ``+=``).
    6. ``_scatter_add(index, values)`` implements ``np.add.at(self, index, values)``.
    """

    __slots__ = ()
    __array_priority__ = 1000
    _ad_tag = 0

    # ---- array attributes ---------------------------------------------------------------

    @property
    def shape(self):
        return np.shape(self._value)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape))

    @property
    def dtype(self):
        return primal(self).dtype

    @property
    def T(self):
        return np.transpose(self)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index):
        return self._apply_op(OPS["getitem"], [self], {"index": index}, self._ad_tag)

    def __bool__(self):
        return bool(primal(self))

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            f"a {type(self).__name__} cannot become a plain numpy array: its derivative "
            "would be lost. Use numpy functions on it (np.sin, np.sum, ...), or "
            "sensitivity.similar() for scratch arrays that must hold derivatives."
        )

    def __float__(self):
        raise TypeError(
            f"float() of a {type(self).__name__} would drop its derivative; use numpy "
            "functions (np.sin, not math.sin) inside differentiated code."
        )

    __complex__ = __int__ = __index__ = __float__

    # ---- methods that mirror ndarray's --------------------------------------------------

    def sum(self, axis=None, keepdims=False):
        return np.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return np.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return np.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return np.min(self, axis=axis, keepdims=keepdims)

    def cumsum(self, axis=None):
        return np.cumsum(self, axis=axis)

    def reshape(self, *shape):
        return np.reshape(self, shape[0] if len(shape) == 1 else shape)

    def ravel(self):
        return np.ravel(self)

    flatten = ravel

    def transpose(self, *axes):
        return np.transpose(self, axes or None)

    def squeeze(self, axis=None):
        return np.squeeze(self, axis)

    def dot(self, other):
        return np.dot(self, other)

    def copy(self):
        return np.copy(self)

    def clip(self, a_min=None, a_max=None):
        return np.clip(self, a_min, a_max)

    # ---- the numpy protocols ------------------------------------------------------------

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.pop("out", None)
        tag = top_tag(inputs + (out or ()))
        if tag != self._ad_tag:
            # numpy asks one object per *type*, so hand over to the top tag's owner
            owner = _owner(tag, inputs + (out or ()))
            if out is not None:
                kwargs["out"] = out
            return owner.__array_ufunc__(ufunc, method, *inputs, **kwargs)
        cls = type(self)
        if method == "__call__":
            if kwargs:
                raise TypeError(
                    f"{ufunc.__name__}: arguments {sorted(kwargs)} are not "
                    "supported on differentiated arrays"
                )
            if ufunc in VALUE_ONLY_UFUNCS:
                result = ufunc(*[primal(x) for x in inputs])
            elif ufunc is np.matmul:
                result = cls._apply_op(OPS["matmul"], list(inputs), {}, tag)
            elif ufunc_rule(ufunc) is not None:
                result = cls._apply_rule(ufunc_rule(ufunc), inputs, tag)
            else:
                raise TypeError(
                    f"numpy.{ufunc.__name__} has no derivative rule; the supported "
                    f"primitives are {sorted(RULES)}"
                )
        elif ufunc is np.add and method == "reduce":
            result = np.sum(
                inputs[0], axis=kwargs.get("axis", 0), keepdims=kwargs.get("keepdims", False)
            )
        elif ufunc is np.add and method == "accumulate":
            result = np.cumsum(inputs[0], axis=kwargs.get("axis", 0))
        elif ufunc is np.add and method == "at":
            inputs[0]._scatter_add(inputs[1], inputs[2])
            return None
        else:
            raise TypeError(
                f"numpy.{ufunc.__name__}.{method} is not supported on differentiated arrays"
            )
        return result if out is None else _store(out[0], result, tag)

    def __array_function__(self, func, types, args, kwargs):
        tag = top_tag(flat_args(args + tuple(kwargs.values())))
        if tag != self._ad_tag:
            owner = _owner(tag, flat_args(args + tuple(kwargs.values())))
            return owner.__array_function__(func, types, args, kwargs)
        entry = FUNCTIONS.get(func)
        if entry is None:
            raise TypeError(
                f"numpy.{func.__name__} is not supported on differentiated arrays; supported: "
                f"{', '.join(supported_functions())}, and the ufuncs of the rule table"
            )
        kind, what = entry
        cls = type(self)
        if kind == "value":
            return func(*[primal(a) for a in args], **{k: primal(v) for k, v in kwargs.items()})
        if kind == "composite":
            return what(*args, **kwargs)
        if kind == "op":
            arrays, params = what.split(*args, **kwargs)
            return cls._apply_op(what, arrays, params, tag)
        if kind == "like":
            return _like(cls, what, args, kwargs)
        return cls._apply_rule(RULES[what], _rule_inputs(what, args, kwargs), tag)


def _owner(tag, values):
    """The first of ``values`` that carries ``tag``."""
    return next(v for v in values if getattr(v, "_ad_tag", 0) == tag)


def _store(target, result, tag):
    """Write ``result`` into the ``out=`` array ``target``."""
    if isinstance(target, ADArray) and target._ad_tag == tag:
        target._assign(result)
        return target
    if isinstance(result, ADArray):
        raise TypeError(
            "out=: a plain numpy array cannot hold a differentiated result; "
            "create it with sensitivity.similar()"
        )
    np.copyto(target, result)
    return target


def _like(cls, fill, args, kwargs):
    """zeros_like/ones_like/empty_like/full_like of a differentiated array."""
    a = args[0]
    if fill is None:  # full_like(a, fill_value, ...)
        fill = args[1] if len(args) > 1 else kwargs.pop("fill_value")
        args = args[:1] + args[2:]
    shape = kwargs.get("shape", args[4] if len(args) > 4 else None)
    shape = np.shape(a) if shape is None else tuple(np.atleast_1d(shape).tolist())
    dtype = kwargs.get("dtype", args[1] if len(args) > 1 else None)
    return a._like(fill, shape, dtype)


def _rule_inputs(name, args, kwargs):
    """Normalise np.where / np.clip calls to the rule's positional inputs."""
    if name == "where":
        if len(args) != 3:
            raise TypeError(
                "np.where(condition) without x and y is not differentiable; "
                "use np.nonzero on plain values"
            )
        return (np.asarray(primal(args[0]), dtype=bool), args[1], args[2])
    a = args[0]
    lo = args[1] if len(args) > 1 else kwargs.get("a_min", kwargs.get("min"))
    hi = args[2] if len(args) > 2 else kwargs.get("a_max", kwargs.get("max"))
    return (a, -np.inf if lo is None else lo, np.inf if hi is None else hi)
