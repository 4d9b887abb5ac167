"""Shared machinery of the differentiation modes: tags and the debug mode.

Every differentiation call (a forward sweep with duals, a tape) takes a fresh
*tag* from one counter. An operation whose inputs carry several tags is handled
by the highest one, which treats objects of lower tags as constants; since a
call made inside another call always gets the higher tag, nested derivatives
never confuse their perturbations (Siskind & Pearlmutter, "Perturbation
confusion and referential transparency", 2005).
"""

from __future__ import annotations

import contextlib
import itertools

import numpy as np

_counter = itertools.count(1)


def new_tag():
    """Return a fresh, strictly increasing differentiation tag (int)."""
    return next(_counter)


def tag_of(x):
    """Return the tag of a dual or tracked array, 0 for plain values."""
    return getattr(x, "_ad_tag", 0)


def top_tag(values):
    """Return the highest tag among ``values`` (0 if none is differentiated)."""
    top = 0
    for v in values:
        t = getattr(v, "_ad_tag", 0)
        if t > top:
            top = t
    return top


class NonFiniteError(FloatingPointError):
    """A value or derivative became non-finite inside :func:`debug_nans`."""


_debug = {"on": False}


@contextlib.contextmanager
def debug_nans():
    """Raise on the first primitive whose value or derivative is non-finite.

    Inside the context, every primitive applied by the duals or the tape checks
    its output value and its derivative and raises :class:`NonFiniteError`
    naming the primitive (``"log"``, ``"divide"``, ``"matmul"``, ...). Outside
    it, non-finite numbers propagate silently as in numpy, under the NaN-safe
    convention of :mod:`sensitivity.ad.rules`.

    Examples
    --------
    >>> import numpy as np, sensitivity as sn
    >>> with sn.debug_nans():
    ...     sn.grad(lambda x: np.sum(np.log(x)), np.array([1.0, 0.0]))
    Traceback (most recent call last):
    ...
    sensitivity.ad.core.NonFiniteError: primitive 'log' produced a non-finite value ...
    """
    old = _debug["on"]
    _debug["on"] = True
    try:
        yield
    finally:
        _debug["on"] = old


def debugging():
    """Return True inside :func:`debug_nans`."""
    return _debug["on"]


def check_finite(name, what, a):
    """Raise :class:`NonFiniteError` if ``a`` has a non-finite entry (debug mode).

    Parameters
    ----------
    name : str
        Primitive that produced ``a``.
    what : str
        ``"value"``, ``"derivative"`` or ``"adjoint"``.
    a : array_like
        The array to check (nested duals are checked on their values).
    """
    ok = np.isfinite(a)
    if not np.all(ok):
        where = np.argwhere(~np.asarray(ok))
        at = f" at index {tuple(int(i) for i in where[0])}" if where.size else ""
        raise NonFiniteError(f"primitive {name!r} produced a non-finite {what}{at}")
