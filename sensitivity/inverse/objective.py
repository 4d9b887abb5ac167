"""Objectives for ``scipy.optimize``: values, gradients, residuals, Jacobians.

An objective is a scalar F(theta) of the model parameters theta, usually

    F(theta) = 1/2 ||r(theta)||^2 (+ terms without a residual form),

exposed to scipy in the optimiser's variables x, theta = T(x)
(:mod:`sensitivity.inverse.transforms`):

========================  =================================================
``fun(x)``                F
``jac(x)``                dF/dx                       (``minimize(jac=)``)
``fun_and_jac(x)``        (F, dF/dx)                  (``minimize(jac=True)``)
``hessp(x, v)``           d2F/dx2 v (Gauss-Newton or exact)
``residuals(x)``          r                           (``least_squares``)
``residual_jac(x)``       dr/dx, dense or a LinearOperator
========================  =================================================

Requests at the same x share one evaluation: each objective caches the last
point's results and computes only what is missing (one forward solve serves
value, gradient and Jacobian). Objectives add (``a + b``) over experiments that
share parameters; :meth:`AbstractObjective.on` maps an experiment's parameters
into a global vector.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from sensitivity.ad import api
from sensitivity.inverse.executors import run_parts
from sensitivity.inverse.transforms import ParameterMap

NEEDS = frozenset({"value", "grad", "residuals", "rjac"})


@dataclass
class Evaluation:
    """What an objective computed at one theta (fields left None were not asked for).

    Attributes
    ----------
    value : float
    grad : ndarray, shape (m,)
    residuals : ndarray, shape (N,)
    rjac : ndarray or LinearOperator, shape (N, m)
    """

    value: float | None = None
    grad: np.ndarray | None = None
    residuals: np.ndarray | None = None
    rjac: object = None

    def has(self, need):
        return all(getattr(self, k) is not None for k in need)

    def update(self, other):
        for f in fields(self):
            if getattr(other, f.name) is not None:
                setattr(self, f.name, getattr(other, f.name))


class AbstractObjective:
    """Base of every objective.

    Contract for implementers:

    1. Set ``n_params`` (length of theta), ``name``, ``has_residuals`` and
       ``n_data`` (number of data residuals: the degrees of freedom of the
       variance estimate; 0 for regularisation terms).
    2. Implement ``_evaluate(theta, need) -> Evaluation`` filling at least the
       fields named in ``need`` (a subset of ``{"value", "grad", "residuals",
       "rjac"}``). Objectives with ``has_residuals`` must fill residuals and
       rjac on request; value must equal ``0.5 * sum(residuals**2)`` (plus any
       non-residual part).
    3. Optionally implement ``_hessp(theta, v)`` (exact Hessian products).
    """

    n_params: int
    name: str = "objective"
    has_residuals: bool = True
    n_data: int = 0
    _transform: ParameterMap | None = None

    # ---- evaluation with a one-point cache ----------------------------------------------

    def evaluate(self, theta, need):
        """Return an :class:`Evaluation` at ``theta`` with the fields in ``need``.

        Parameters
        ----------
        theta : ndarray, shape (n_params,)
        need : iterable of str
            Subset of ``{"value", "grad", "residuals", "rjac"}``.
        """
        need = frozenset(need)
        if not need <= NEEDS:
            raise ValueError(f"need must be a subset of {sorted(NEEDS)}, got {sorted(need)}")
        if not self.has_residuals and need & {"residuals", "rjac"}:
            raise TypeError(
                f"{self.name}: this objective has no residual form (it is not a "
                "sum of squares); use a minimize method, not least_squares"
            )
        theta = self._check_theta(theta)
        key = theta.tobytes()
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[0] == key:
            ev = cached[1]
            missing = {k for k in need if getattr(ev, k) is None}
            if missing:
                ev.update(self._evaluate(theta, missing))
        else:
            ev = self._evaluate(theta, need)
            self._cache = (key, ev)
        return ev

    def _check_theta(self, theta):
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_params,):
            raise ValueError(
                f"{self.name}: parameters must have shape ({self.n_params},), got {theta.shape}"
            )
        if not np.all(np.isfinite(theta)):
            raise ValueError(f"{self.name}: parameters must be finite, got {theta}")
        return theta

    # ---- transforms ---------------------------------------------------------------------

    @property
    def transform(self):
        """The :class:`ParameterMap` from optimiser variables x to theta."""
        if self._transform is None:
            self._transform = ParameterMap.of(None, self.n_params)
        return self._transform

    def with_transform(self, transform):
        """Set the parameter transform (one Transform, or one per parameter); return self."""
        self._transform = ParameterMap.of(transform, self.n_params)
        return self

    def to_theta(self, x):
        """Model parameters theta = T(x), shape (n_params,)."""
        return self.transform.forward(self._check_x(x))

    def to_x(self, theta):
        """Optimiser variables x = T^-1(theta), shape (n_params,)."""
        return self.transform.inverse(self._check_theta(theta))

    def _check_x(self, x):
        if np.iscomplexobj(x):  # never drop an imaginary part silently (complex step)
            raise TypeError("x must be real: objectives evaluate their models in float64")
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n_params,):
            raise ValueError(f"x must have shape ({self.n_params},), got {x.shape}")
        return x

    # ---- scipy-facing methods (in x) ----------------------------------------------------

    def fun(self, x):
        """F(T(x)) (float)."""
        return float(self.evaluate(self.to_theta(x), {"value"}).value)

    def jac(self, x):
        """dF/dx, shape (n_params,), float64 C-contiguous."""
        return self.fun_and_jac(x)[1]

    def fun_and_jac(self, x):
        """(F, dF/dx) from one evaluation, for ``minimize(..., jac=True)``."""
        ev = self.evaluate(self.to_theta(x), {"value", "grad"})
        g = ev.grad * self.transform.derivative(x)
        return float(ev.value), np.ascontiguousarray(g, dtype=np.float64)

    def residuals(self, x):
        """r(T(x)), shape (N,), for ``least_squares``."""
        r = self.evaluate(self.to_theta(x), {"residuals"}).residuals
        return np.ascontiguousarray(r, dtype=np.float64)

    def residual_jac(self, x):
        """dr/dx, shape (N, n_params): a dense array, or a LinearOperator when large."""
        J = self.evaluate(self.to_theta(x), {"rjac"}).rjac
        d = self.transform.derivative(x)
        if isinstance(J, LinearOperator):
            return _column_scaled(J, d)
        return np.ascontiguousarray(np.asarray(J) * d[None, :], dtype=np.float64)

    def hessp(self, x, v, kind="gauss-newton"):
        """Hessian-vector product d2F/dx2 v.

        Parameters
        ----------
        x, v : ndarray, shape (n_params,)
        kind : {"gauss-newton", "exact"}
            ``"gauss-newton"``: J^T J v (positive semi-definite, needs the
            residual form); ``"exact"``: the objective's own second
            derivatives where it has them.
        """
        x = self._check_x(x)
        v = np.asarray(v, dtype=np.float64)
        d = self.transform.derivative(x)
        theta = self.to_theta(x)
        u = d * v
        if kind == "gauss-newton":
            ev = self.evaluate(theta, {"rjac", "grad"})
            J = aslinearoperator(ev.rjac)
            Hu = J.rmatvec(J.matvec(u))
        elif kind == "exact":
            Hu = self._hessp(theta, u)
        else:
            raise ValueError(f"kind must be 'gauss-newton' or 'exact', got {kind!r}")
        out = d * Hu
        if not self.transform.is_identity:  # the gradient term of the chain rule
            grad = ev.grad if kind == "gauss-newton" else self.evaluate(theta, {"grad"}).grad
            out = out + self.transform.second(x) * grad * v
        return np.ascontiguousarray(out, dtype=np.float64)

    def _hessp(self, theta, u):
        raise TypeError(f"{self.name}: no exact Hessian products; use kind='gauss-newton'")

    # ---- composition --------------------------------------------------------------------

    def __add__(self, other):
        if not isinstance(other, AbstractObjective):
            return NotImplemented
        left = self.parts if isinstance(self, SumObjective) else [self]
        right = other.parts if isinstance(other, SumObjective) else [other]
        return SumObjective(left + right)

    def on(self, indices, n_params):
        """Read this objective's parameters from a global vector.

        Parameters
        ----------
        indices : sequence of int, length self.n_params
            ``theta_local = theta_global[indices]``.
        n_params : int
            Length of the global vector.

        Returns
        -------
        MappedObjective
        """
        return MappedObjective(self, indices, n_params)


def _column_scaled(J, d):
    return LinearOperator(
        J.shape,
        matvec=lambda v: J.matvec(d * np.ravel(v)),
        rmatvec=lambda w: d * J.rmatvec(w),
        dtype=np.float64,
    )


class MappedObjective(AbstractObjective):
    """An objective whose parameters are ``theta_global[indices]`` (see ``on``)."""

    def __init__(self, part, indices, n_params):
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu" or indices.shape != (part.n_params,):
            raise ValueError(
                f"{part.name}: indices must be {part.n_params} integers, got {indices!r}"
            )
        if np.any(indices < 0) or np.any(indices >= n_params):
            raise ValueError(f"{part.name}: indices must lie in [0, {n_params}), got {indices}")
        self.part, self.indices, self.n_params = part, indices, int(n_params)
        self.name, self.has_residuals, self.n_data = part.name, part.has_residuals, part.n_data

    def _evaluate(self, theta, need):
        ev = self.part.evaluate(theta[self.indices], need)
        out = Evaluation(ev.value, None, ev.residuals, None)
        if ev.grad is not None:
            out.grad = np.zeros(self.n_params)
            np.add.at(out.grad, self.indices, ev.grad)
        if ev.rjac is not None:
            P = np.zeros((self.part.n_params, self.n_params))
            P[np.arange(self.part.n_params), self.indices] = 1.0
            out.rjac = (
                aslinearoperator(ev.rjac) * aslinearoperator(P)
                if isinstance(ev.rjac, LinearOperator)
                else np.asarray(ev.rjac) @ P
            )
        return out

    def _hessp(self, theta, u):
        out = np.zeros(self.n_params)
        np.add.at(out, self.indices, self.part._hessp(theta[self.indices], u[self.indices]))
        return out


class SumObjective(AbstractObjective):
    """A sum of objectives over one parameter vector (experiments, regularisation).

    Parameters
    ----------
    parts : list of AbstractObjective
        All with the same ``n_params`` (map them with ``on`` otherwise).
    executor : optional
        Where the parts are evaluated: ``None`` (in process, in order), a
        ``concurrent.futures`` executor, or a ``dask.distributed.Client``
        (:mod:`sensitivity.inverse.executors`).
    """

    def __init__(self, parts, executor=None):
        parts = list(parts)
        if not parts:
            raise ValueError("SumObjective needs at least one part")
        n = {p.n_params for p in parts}
        if len(n) != 1:
            sizes = ", ".join(f"{p.name!r}: {p.n_params}" for p in parts)
            raise ValueError(
                f"mismatched experiment shapes: the parts have different numbers "
                f"of parameters ({sizes}); map them into one vector with "
                ".on(indices, n_params)"
            )
        self.parts = parts
        self.n_params = n.pop()
        self.executor = executor
        self.name = " + ".join(p.name for p in parts)
        self.has_residuals = all(p.has_residuals for p in parts)
        self.n_data = sum(p.n_data for p in parts)

    def using(self, executor):
        """Evaluate the parts with ``executor``; return self."""
        self.executor = executor
        return self

    def _evaluate(self, theta, need):
        evs = run_parts(self.executor, self.parts, theta, need)
        out = Evaluation()
        if "value" in need:
            out.value = float(sum(ev.value for ev in evs))
        if "grad" in need:
            out.grad = np.sum([ev.grad for ev in evs], axis=0)
        if "residuals" in need:
            out.residuals = np.concatenate([np.ravel(ev.residuals) for ev in evs])
        if "rjac" in need:
            blocks = [ev.rjac for ev in evs]
            if any(isinstance(b, LinearOperator) for b in blocks):
                out.rjac = _vstack_operators([aslinearoperator(b) for b in blocks])
            else:
                out.rjac = np.vstack([np.asarray(b) for b in blocks])
        return out

    def _hessp(self, theta, u):
        return np.sum([p._hessp(theta, u) for p in self.parts], axis=0)


def _vstack_operators(ops):
    rows = [op.shape[0] for op in ops]
    cuts = np.cumsum(rows)[:-1]
    shape = (sum(rows), ops[0].shape[1])
    return LinearOperator(
        shape,
        matvec=lambda v: np.concatenate([op.matvec(v) for op in ops]),
        rmatvec=lambda w: sum(op.rmatvec(part) for op, part in zip(ops, np.split(w, cuts))),
        dtype=np.float64,
    )


class FunctionObjective(AbstractObjective):
    """Least squares of a model written with numpy, differentiated by the toolkit.

    ``r(theta) = sqrt(w) * (model(theta) - data)`` (or ``model(theta)`` itself
    when ``data`` is None), with the Jacobian from forward-mode duals and
    exact Hessian products from forward over reverse (:mod:`sensitivity.ad`).

    Parameters
    ----------
    model : callable
        ``model(theta) -> ndarray`` built from numpy ufuncs and array functions.
    n_params : int
        Length of theta.
    data : ndarray, optional
        Observations, shaped like ``model(theta)``.
    weights : ndarray or float, optional
        Non-negative weights (1/sigma**2), broadcastable to ``data``.
    name : str, optional
    """

    def __init__(self, model, n_params, data=None, weights=None, name="model"):
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        if not isinstance(n_params, (int, np.integer)) or n_params < 1:
            raise ValueError(f"n_params must be a positive integer, got {n_params!r}")
        self.model, self.n_params, self.name = model, int(n_params), name
        self.data = None if data is None else _check_data(data, "data")
        self.sqrt_w = None if weights is None else np.sqrt(_check_weights(weights, self.data))
        self.n_data = 0 if self.data is None else self.data.size
        self.nevals = 0

    def _residual_fn(self, theta):
        y = self.model(theta)
        if self.data is not None:
            if np.shape(y) != self.data.shape:
                raise ValueError(
                    f"{self.name}: model returned shape {np.shape(y)}, data has "
                    f"shape {self.data.shape}"
                )
            y = y - self.data
        if self.sqrt_w is not None:
            y = y * self.sqrt_w
        return np.reshape(y, (-1,))

    def _evaluate(self, theta, need):
        self.nevals += 1
        out = Evaluation()
        if need & {"rjac", "grad"}:
            r, J = api.value_and_jacobian(self._residual_fn, theta)  # one set of sweeps
            out.rjac, out.grad = J, J.T @ r
        else:
            r = self._residual_fn(theta)
        if self.n_data == 0:
            self.n_data = r.size
        out.residuals, out.value = r, 0.5 * float(r @ r)
        return out

    def _hessp(self, theta, u):
        return api.hvp(lambda t: 0.5 * np.sum(self._residual_fn(t) ** 2), theta, u)


def _check_data(data, name):
    data = np.asarray(data, dtype=np.float64)
    bad = ~np.isfinite(data)
    if bad.any():
        raise ValueError(
            f"{name} contains NaN or inf at index "
            f"{tuple(int(i) for i in np.argwhere(bad)[0])}; remove or mask it"
        )
    return data


def _check_weights(weights, data):
    w = np.asarray(weights, dtype=np.float64)
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and non-negative")
    if data is not None:
        try:
            w = np.broadcast_to(w, data.shape)
        except ValueError:
            raise ValueError(
                f"weights of shape {w.shape} do not broadcast to the data's shape {data.shape}"
            ) from None
    return w
