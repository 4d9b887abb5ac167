"""Reverse mode over numpy arrays: a tape of tracked arrays.

Operations on :class:`Tracked` arrays compute their values at once and append
a node to their :class:`Tape`: the indices of the parent nodes and a closure
that maps the output's cotangent ``g`` to the parents' cotangents,

    x_bar_i += unbroadcast(d_i(y, *x) * g)

for the elementwise rules (:mod:`sensitivity.ad.rules`, NaN-safe) and the
``vjp`` of the structural operations (:mod:`sensitivity.ad.linalg`). One
backward sweep over the nodes in reverse order gives a vector-Jacobian
product; :meth:`Tape.clear` then drops the recorded values.

Tracked arrays are functional: ``a[i] = v`` records a new node and rebinds
``a`` to it, so a *view* of a tracked array does not see later writes to it
(unlike numpy). Values may be duals of an enclosing forward differentiation,
which gives forward-over-reverse Hessian-vector products.
"""

from __future__ import annotations

import numpy as np

from sensitivity.ad.base import ADArray
from sensitivity.ad.core import check_finite, debugging, new_tag, tag_of
from sensitivity.ad.linalg import unbroadcast
from sensitivity.ad.rules import safe_mul


class Tape:
    """A record of operations for one reverse-mode differentiation.

    Parameters
    ----------
    tag : int, optional
        Differentiation tag; fresh by default.
    """

    def __init__(self, tag=None):
        self.tag = new_tag() if tag is None else tag
        self.nodes = []  # node i = (name, parent node ids or None for a leaf, vjp)

    def leaf(self, value):
        """Start tracking ``value`` (array_like) and return it as a :class:`Tracked`."""
        return self.record("leaf", value, None, None)

    def record(self, name, value, parents, vjp):
        """Append a node and return the tracked output."""
        self.nodes.append((name, parents, vjp))
        return Tracked(value, self, len(self.nodes) - 1)

    def backward(self, output, g, wrt):
        """Propagate the cotangent ``g`` of ``output`` back to the leaves ``wrt``.

        Parameters
        ----------
        output : Tracked
            Output of the recorded computation.
        g : ndarray, shape output.shape
            Its cotangent.
        wrt : list of Tracked
            Leaves whose cotangents are wanted.

        Returns
        -------
        list of ndarray
            ``J^T g`` for each leaf, shaped like the leaf (zeros if unreached).
        """
        wanted = {leaf.node for leaf in wrt}
        grads = {output.node: g}
        found = {}
        for i in range(output.node, -1, -1):
            gi = grads.pop(i, None)
            if gi is None:
                continue
            name, parents, vjp = self.nodes[i]
            if parents is None:
                if i in wanted:
                    found[i] = gi
                continue
            for p, gp in zip(parents, vjp(gi)):
                if p is None or gp is None:
                    continue
                if debugging():
                    check_finite(name, "adjoint", gp)
                grads[p] = gp if p not in grads else grads[p] + gp
        return [
            found[leaf.node] if leaf.node in found else np.zeros_like(leaf.value) for leaf in wrt
        ]

    def clear(self):
        """Release every recorded node (and the values the closures hold)."""
        self.nodes.clear()


class Tracked(ADArray):
    """An array whose operations are recorded on a :class:`Tape`.

    Attributes
    ----------
    value : ndarray
        The value (or a dual of an enclosing differentiation).
    tape : Tape
    node : int
        Index of the node that produced ``value``.
    """

    __slots__ = ("value", "tape", "node", "_ad_tag")

    def __init__(self, value, tape, node):
        self.value = value if tag_of(value) else np.asarray(value)
        self.tape = tape
        self.node = node
        self._ad_tag = tape.tag

    @property
    def _value(self):
        return self.value

    def __repr__(self):
        return f"Tracked(value={self.value!r}, node={self.node}, tag={self._ad_tag})"

    # ---- ADArray contract ---------------------------------------------------------------

    @classmethod
    def _apply_rule(cls, rule, inputs, tag):
        tape = next(x.tape for x in inputs if tag_of(x) == tag)
        xs = [x.value if tag_of(x) == tag else x for x in inputs]
        y = rule.f(*xs)
        if debugging():
            check_finite(rule.name, "value", y)
        parents = [
            x.node if tag_of(x) == tag and rule.d[i] is not None else None
            for i, x in enumerate(inputs)
        ]

        def vjp(g):
            with np.errstate(divide="ignore", invalid="ignore"):
                return [
                    None
                    if p is None
                    else unbroadcast(safe_mul(rule.d[i](y, *xs), g), np.shape(xs[i]))
                    for i, p in enumerate(parents)
                ]

        return tape.record(rule.name, y, parents, vjp)

    @classmethod
    def _apply_op(cls, op, arrays, params, tag):
        tape = next(a.tape for a in arrays if tag_of(a) == tag)
        xs = [a.value if tag_of(a) == tag else a for a in arrays]
        y = op.f(*xs, **params)
        if debugging():
            check_finite(op.name, "value", y)
        parents = [a.node if tag_of(a) == tag else None for a in arrays]
        return tape.record(op.name, y, parents, lambda g: op.vjp(g, y, xs, params))

    def _like(self, fill, shape, dtype):
        return self.tape.leaf(np.full_like(self.value, fill, dtype=dtype, shape=shape))

    def _assign(self, result):
        if tag_of(result) != self._ad_tag:
            result = self.tape.leaf(np.broadcast_to(result, self.shape) * 1.0)
        self.value, self.node = result.value, result.node

    def __setitem__(self, index, v):
        tracked = tag_of(v) == self._ad_tag
        new = np.copy(self.value)
        new[index] = v.value if tracked else v
        vshape = np.shape(v.value) if tracked else None

        def vjp(g):
            g_old = np.copy(g)
            g_old[index] = 0.0
            return [g_old, unbroadcast(g[index], vshape) if tracked else None]

        out = self.tape.record("setitem", new, [self.node, v.node if tracked else None], vjp)
        self.value, self.node = out.value, out.node

    def _scatter_add(self, index, v):
        tracked = tag_of(v) == self._ad_tag
        new = np.copy(self.value)
        np.add.at(new, index, v.value if tracked else v)
        vshape = np.shape(v.value) if tracked else None

        def vjp(g):
            return [g, unbroadcast(g[index], vshape) if tracked else None]

        out = self.tape.record("add.at", new, [self.node, v.node if tracked else None], vjp)
        self.value, self.node = out.value, out.node
