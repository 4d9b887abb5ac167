"""Objectives of an ODE solution: point observations, integrals, least squares.

A term is a scalar G of the trajectory y(t) of an :class:`~sensitivity.ODEProblem`:

* :class:`L2Misfit`: ``G = 1/2 sum_i sum_k w_ik (h_k(t_i, y(t_i), p) - d_ik)^2``
  with ``h`` the observed components (all, an index list, or a compiled
  function ``observe(t, y, p, out)``); it also has a residual form
  ``r_ik = sqrt(w_ik) (h_k - d_ik)`` for ``least_squares``;
* :class:`PointObjective`: ``G = sum_i g(t_i, y(t_i), p)``;
* :class:`IntegralObjective`: ``G = integral of g(t, y(t), p) dt`` over the
  problem's ``t_span`` (or a sub-interval).

Terms add (``a + b``). What the adjoint and forward-sensitivity solvers need from
a term, at a state y (n,) and parameters p (m,):

* ``point(i, y, p) -> (value, g_y (n,), g_p (m,))`` for each observation time
  ``t_obs[i]`` (point terms);
* ``density(t, y, p, g_y, g_p) -> value`` for the integrand (integral terms);
* ``residuals(Y, p)``, ``residual_jac(Y, S, p)`` for least squares, from the
  states at the observation times Y (nt, n) and their sensitivities S.

Derivatives of user functions come from the compiled duals
(:mod:`sensitivity.ad.nb`) or, with ``compile=False``, the numpy-level duals.
"""

from __future__ import annotations

import numpy as np

from sensitivity.sens.kernels import scalar_gradient_kernel, vector_jacobian_kernels


def _check_times(t_obs):
    t = np.asarray(t_obs, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"t_obs must be a non-empty 1-D array, got shape {t.shape}")
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise ValueError(f"t_obs must be finite; t_obs[{bad[0]}] = {t[bad[0]]}")
    if t.size > 1 and not (np.all(np.diff(t) >= 0) or np.all(np.diff(t) <= 0)):
        i = int(np.argmax(np.diff(t) < 0) if t[-1] >= t[0] else np.argmax(np.diff(t) > 0))
        raise ValueError(
            f"t_obs must be sorted along the integration; t_obs[{i}] = {t[i]} "
            f"and t_obs[{i + 1}] = {t[i + 1]} are out of order"
        )
    return t


def check_in_span(t_obs, t_span, name="t_obs"):
    """Raise ValueError unless every time lies in t_span and runs with it."""
    t0, t1 = t_span
    lo, hi = min(t0, t1), max(t0, t1)
    out = np.flatnonzero((t_obs < lo) | (t_obs > hi))
    if out.size:
        raise ValueError(
            f"{name} must lie in t_span = {tuple(t_span)}; {name}[{out[0]}] = "
            f"{t_obs[out[0]]} does not"
        )
    if t_obs.size > 1 and (t_obs[-1] - t_obs[0]) * (t1 - t0) < 0:
        raise ValueError(
            f"{name} must be sorted in the direction of integration (from {t0} to {t1})"
        )


class Term:
    """Base of the objective terms; ``a + b`` gives a :class:`TermSum`."""

    has_residuals = False
    t_obs = np.empty(0)

    def __add__(self, other):
        if not isinstance(other, Term):
            return NotImplemented
        return TermSum([self, other])

    def bind(self, prob):
        """Validate against ``prob`` and compile what is needed; return self."""
        return self

    def point(self, i, y, p):
        """Value and gradients of the contribution at ``t_obs[i]``."""
        raise NotImplementedError

    def points(self, Y, p):
        """All observations at once: value, ``g_y`` (nt, n) and summed ``g_p`` (m,).

        ``Y`` (nt, n) holds the states at ``t_obs``.
        """
        value, G, gp = 0.0, np.zeros(Y.shape), np.zeros(p.size)
        for i in range(Y.shape[0]):
            v, g_y, g_p = self.point(i, Y[i], p)
            value += v
            G[i] = g_y
            gp += g_p
        return value, G, gp

    def density(self, t, y, p, g_y, g_p):
        """Integrand value; fills ``g_y`` (n,) and ``g_p`` (m,). None if no integral."""
        return None

    @property
    def is_integral(self):
        return False


class L2Misfit(Term):
    """Weighted least-squares misfit to observations.

    ``G = 0.5 * sum(w * (h(t_i, y(t_i), p) - data_i)**2)``.

    Parameters
    ----------
    t_obs : array_like, shape (nt,)
        Observation times, sorted along the integration, inside ``t_span``.
    data : array_like, shape (nt, n_obs) or (nt,)
        Observations (finite).
    observe : None, int, sequence of int, or callable, optional
        ``None``: all components (n_obs = n); indices: those components;
        a callable ``observe(t, y, p, out)`` filling ``out`` (n_obs,),
        numba-compilable like the right-hand side.
    weights : float or array_like broadcastable to data, optional
        Non-negative weights (1/sigma**2).
    """

    has_residuals = True

    def __init__(self, t_obs, data, observe=None, weights=None):
        self.t_obs = _check_times(t_obs)
        d = np.asarray(data, dtype=np.float64)
        if d.ndim == 1:
            d = d[:, None]
        if d.ndim != 2 or d.shape[0] != self.t_obs.size:
            raise ValueError(
                f"data must have shape (len(t_obs), n_observed) = "
                f"({self.t_obs.size}, n_observed); got {np.shape(data)}"
            )
        bad = np.argwhere(~np.isfinite(d))
        if bad.size:
            i, k = (int(v) for v in bad[0])
            raise ValueError(
                f"data contains NaN or inf at data[{i}, {k}] "
                f"(t = {self.t_obs[i]}); remove that observation or give it "
                "weight 0 with a finite placeholder"
            )
        self.data = d
        w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=np.float64)
        if np.any(~np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and non-negative")
        try:
            self.weights = np.broadcast_to(w, d.shape).copy()
        except ValueError:
            raise ValueError(
                f"weights of shape {w.shape} do not broadcast to data's shape {d.shape}"
            ) from None
        self.sqrt_w = np.sqrt(self.weights)
        self.observe = observe
        self.index = None
        self._h = self._hy = self._hp = None

    def bind(self, prob):
        check_in_span(self.t_obs, prob.t_span)
        n_obs = self.data.shape[1]
        if self.observe is None or not callable(self.observe):
            index = (
                np.arange(prob.n)
                if self.observe is None
                else np.atleast_1d(np.asarray(self.observe))
            )
            if index.dtype.kind not in "iu" or index.ndim != 1:
                raise TypeError(
                    "observe must be None, component indices or a function observe(t, y, p, out)"
                )
            if np.any(index < -prob.n) or np.any(index >= prob.n):
                raise ValueError(f"observe: indices must lie in [0, {prob.n}), got {index}")
            if index.size != n_obs:
                raise ValueError(
                    f"data must have shape (len(t_obs), n_observed) = "
                    f"({self.t_obs.size}, {index.size}); got {self.data.shape}"
                )
            self.index = index % prob.n
        else:
            self._h, self._hy, self._hp = vector_jacobian_kernels(self.observe, n_obs, prob.compile)
        return self

    # ---- observation operator ---------------------------------------------------------

    def observed(self, i, y, p):
        """``h(t_i, y, p)``, shape (n_obs,)."""
        if self.index is not None:
            return y[self.index]
        out = np.empty(self.data.shape[1])
        self._h(self.t_obs[i], y, p, out)
        return out

    def observed_jacobians(self, i, y, p):
        """``(dh/dy (n_obs, n), dh/dp (n_obs, m))``; dh/dp is None for indices."""
        n_obs = self.data.shape[1]
        if self.index is not None:
            Hy = np.zeros((n_obs, y.size))
            Hy[np.arange(n_obs), self.index] = 1.0
            return Hy, None
        Hy = np.empty((n_obs, y.size))
        Hp = np.empty((n_obs, p.size))
        self._hy(self.t_obs[i], y, p, Hy)
        self._hp(self.t_obs[i], y, p, Hp)
        return Hy, Hp

    # ---- what the solvers call ----------------------------------------------------------

    def point(self, i, y, p):
        r = self.sqrt_w[i] * (self.observed(i, y, p) - self.data[i])
        wr = self.sqrt_w[i] * r
        if self.index is not None:
            g_y = np.zeros(y.size)
            np.add.at(g_y, self.index, wr)
            return 0.5 * float(r @ r), g_y, np.zeros(p.size)
        Hy, Hp = self.observed_jacobians(i, y, p)
        return 0.5 * float(r @ r), Hy.T @ wr, Hp.T @ wr

    def points(self, Y, p):
        if self.index is None:
            return super().points(Y, p)
        r = self.sqrt_w * (Y[:, self.index] - self.data)  # vectorised for component lists
        G = np.zeros(Y.shape)
        np.add.at(G, (slice(None), self.index), self.sqrt_w * r)
        return 0.5 * float(np.sum(r * r)), G, np.zeros(p.size)

    def residuals(self, Y, p):
        """``sqrt(w) (h - d)`` at the observed states Y (nt, n), flattened (nt * n_obs,)."""
        if self.index is not None:  # component selection: one fancy index, no Python loop
            return np.ravel(self.sqrt_w * (Y[:, self.index] - self.data))
        H = np.stack([self.observed(i, Y[i], p) for i in range(self.t_obs.size)])
        return np.ravel(self.sqrt_w * (H - self.data))

    def residual_jac(self, Y, S, p):
        """Residual Jacobian through the states: ``sqrt(w) dh/dy S``, (nt * n_obs, k).

        ``S`` (nt, n, k) holds the sensitivities of y at the observation times to
        k directions.
        """
        nt, n_obs = self.data.shape
        if self.index is not None:
            out = self.sqrt_w[:, :, None] * S[:, self.index, :]
            return out.reshape(nt * n_obs, S.shape[2])
        out = np.empty((nt, n_obs, S.shape[2]))
        for i in range(nt):
            block = self.observed_jacobians(i, Y[i], p)[0] @ S[i]
            out[i] = self.sqrt_w[i][:, None] * block
        return out.reshape(nt * n_obs, S.shape[2])

    def residual_jac_p(self, Y, p):
        """Residual Jacobian through h's own dependence on p, (nt * n_obs, m)."""
        nt, n_obs = self.data.shape
        out = np.zeros((nt, n_obs, p.size))
        if self.index is None:  # a component selection does not depend on p
            for i in range(nt):
                out[i] = self.sqrt_w[i][:, None] * self.observed_jacobians(i, Y[i], p)[1]
        return out.reshape(nt * n_obs, p.size)

    @property
    def n_residuals(self):
        return self.data.size


class PointObjective(Term):
    """``G = sum_i g(t_i, y(t_i), p)`` for a compiled scalar function ``g``.

    Parameters
    ----------
    t_obs : array_like, shape (nt,)
    g : callable
        ``g(t, y, p) -> float``, numba-compilable (or plain numpy with
        ``compile=False`` on the problem).
    """

    def __init__(self, t_obs, g):
        if not callable(g):
            raise TypeError(f"g must be callable, got {type(g).__name__}")
        self.t_obs = _check_times(t_obs)
        self.g = g
        self._grad = None

    def bind(self, prob):
        check_in_span(self.t_obs, prob.t_span)
        self._grad = scalar_gradient_kernel(self.g, prob.compile)
        return self

    def point(self, i, y, p):
        g_y, g_p = np.empty(y.size), np.empty(p.size)
        value = self._grad(self.t_obs[i], y, p, g_y, g_p)
        return float(value), g_y, g_p


class IntegralObjective(Term):
    """``G = integral of g(t, y(t), p) dt`` over ``t_span``.

    The integral is oriented along the integration: from ``t_span[0]`` to
    ``t_span[1]`` (negative for a positive g when the problem runs backwards).

    Parameters
    ----------
    g : callable
        ``g(t, y, p) -> float`` as for :class:`PointObjective`.
    t_span : (float, float), optional
        Sub-interval of the problem's span (default: all of it).
    """

    def __init__(self, g, t_span=None):
        if not callable(g):
            raise TypeError(f"g must be callable, got {type(g).__name__}")
        self.g = g
        self.span = None if t_span is None else _check_times(t_span)
        if self.span is not None and self.span.size != 2:
            raise ValueError(f"t_span must be a pair, got {t_span!r}")
        self._grad = None

    @property
    def is_integral(self):
        return True

    def bind(self, prob):
        if self.span is None:
            self.span = np.asarray(prob.t_span, dtype=np.float64)
        check_in_span(self.span, prob.t_span, "t_span")
        self._grad = scalar_gradient_kernel(self.g, prob.compile)
        return self

    def density(self, t, y, p, g_y, g_p):
        lo, hi = min(self.span), max(self.span)
        if t < lo or t > hi:
            g_y[:] = 0.0
            g_p[:] = 0.0
            return 0.0
        return float(self._grad(t, y, p, g_y, g_p))


class TermSum(Term):
    """A sum of terms (``a + b``); observation times are merged."""

    def __init__(self, terms):
        self.terms = []
        for t in terms:
            self.terms.extend(t.terms if isinstance(t, TermSum) else [t])
        self.has_residuals = all(t.has_residuals for t in self.terms)

    @property
    def is_integral(self):
        return any(t.is_integral for t in self.terms)

    def bind(self, prob):
        for t in self.terms:
            t.bind(prob)
        return self
