"""Parameter transforms: the optimiser works on x, the model on theta = T(x).

Each transform is elementwise, so that its Jacobian is diagonal:

* :data:`IDENTITY`: theta = x;
* :class:`Log`: theta = exp(x), for positive parameters spanning decades
  (transmissivities, rate constants);
* :class:`Bounded`: theta = lo + (hi - lo) (1 + tanh x) / 2, a smooth map of
  the real line onto (lo, hi);
* :class:`Transform`: any user map given with its inverse and derivative.

Chain rule used by :class:`~sensitivity.inverse.objective.AbstractObjective`:
grad_x = T'(x) * grad_theta, J_x = J_theta * T'(x) (columns scaled), and
H_x = T' H_theta T' + diag(T''(x) * grad_theta).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Transform:
    """An elementwise map theta = forward(x) with its inverse and derivatives.

    Parameters
    ----------
    forward : callable
        ``forward(x) -> theta`` (elementwise, vectorised).
    inverse : callable
        ``inverse(theta) -> x``.
    derivative : callable
        ``derivative(x) -> d theta / d x`` (elementwise).
    second : callable, optional
        ``second(x) -> d^2 theta / d x^2``; needed by exact Hessian products.
    name : str
    """

    forward: Callable
    inverse: Callable
    derivative: Callable
    second: Callable | None = None
    name: str = "custom"

    def __post_init__(self):
        for field in ("forward", "inverse", "derivative"):
            if not callable(getattr(self, field)):
                raise TypeError(
                    f"Transform {self.name!r}: {field} must be a callable; a transform "
                    "needs its inverse and its derivative (use sensitivity.derivative to "
                    "build one if you have none)"
                )


def _identity(x):
    return np.asarray(x, dtype=float)


def _ones(x):
    return np.ones_like(np.asarray(x, dtype=float))


def _zeros(x):
    return np.zeros_like(np.asarray(x, dtype=float))


IDENTITY = Transform(_identity, _identity, _ones, _zeros, "identity")


def Log():  # noqa: N802  (reads as a type at the call site: transform=sn.Log())
    """theta = exp(x): positive parameters, optimised in log space."""
    return Transform(np.exp, _checked_log, np.exp, np.exp, "log")


def _checked_log(theta):
    theta = np.asarray(theta, dtype=float)
    if np.any(theta <= 0):
        raise ValueError(f"Log transform: parameters must be positive, got {theta}")
    return np.log(theta)


def Bounded(lo, hi):  # noqa: N802
    """theta = lo + (hi - lo) (1 + tanh x) / 2: a smooth map onto (lo, hi).

    Parameters
    ----------
    lo, hi : float or ndarray
        Bounds, ``lo < hi`` elementwise.
    """
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    if np.any(~np.isfinite(lo)) or np.any(~np.isfinite(hi)) or np.any(lo >= hi):
        raise ValueError(f"Bounded: need finite lo < hi, got lo={lo}, hi={hi}")
    half = 0.5 * (hi - lo)

    def inverse(theta):
        theta = np.asarray(theta, dtype=float)
        if np.any(theta <= lo) or np.any(theta >= hi):
            raise ValueError(f"Bounded transform: parameters {theta} are not inside ({lo}, {hi})")
        return np.arctanh((theta - lo) / half - 1.0)

    return Transform(
        lambda x: lo + half * (1.0 + np.tanh(x)),
        inverse,
        lambda x: half / np.cosh(x) ** 2,
        lambda x: -2.0 * half * np.tanh(x) / np.cosh(x) ** 2,
        f"bounded({lo}, {hi})",
    )


@dataclass(frozen=True)
class ParameterMap:
    """One transform per parameter (elementwise composition).

    Parameters
    ----------
    transforms : list of Transform or None
        ``None`` entries are the identity.
    """

    transforms: tuple

    def __post_init__(self):
        # derived once (frozen): the identity map skips per-parameter calls in the optimiser loop
        object.__setattr__(self, "is_identity", all(t is IDENTITY for t in self.transforms))

    @classmethod
    def of(cls, spec, n):
        """Build from ``None``, one transform, or a list of ``n`` transforms."""
        if spec is None:
            return cls((IDENTITY,) * n)
        if isinstance(spec, ParameterMap):
            if len(spec.transforms) != n:
                raise ValueError(f"transform: {len(spec.transforms)} transforms for {n} parameters")
            return spec
        if isinstance(spec, Transform):
            return cls((spec,) * n)
        spec = list(spec)
        if len(spec) != n:
            raise ValueError(f"transform: got {len(spec)} transforms for {n} parameters")
        for t in spec:
            if t is not None and not isinstance(t, Transform):
                raise TypeError(f"transform: expected Transform or None, got {type(t).__name__}")
        return cls(tuple(IDENTITY if t is None else t for t in spec))

    def _apply(self, what, x):
        if np.iscomplexobj(x):
            raise TypeError("transforms act on real parameters; got a complex array")
        x = np.asarray(x, dtype=float)
        if self.is_identity:
            if what in ("forward", "inverse"):
                return x.copy()
            return np.full(x.shape, 1.0 if what == "derivative" else 0.0)
        return np.array([getattr(t, what)(xi) for t, xi in zip(self.transforms, x)], dtype=float)

    def forward(self, x):
        """theta = T(x), shape (n,)."""
        return self._apply("forward", x)

    def inverse(self, theta):
        """x = T^-1(theta), shape (n,)."""
        return self._apply("inverse", theta)

    def derivative(self, x):
        """d theta / d x, shape (n,)."""
        return self._apply("derivative", x)

    def second(self, x):
        """d^2 theta / d x^2, shape (n,); raises if a transform lacks it."""
        for t in self.transforms:
            if t.second is None:
                raise TypeError(
                    f"transform {t.name!r} has no second derivative; exact "
                    "Hessian products need Transform(second=...)"
                )
        return self._apply("second", x)
