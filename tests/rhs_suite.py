"""Shared right-hand sides for the tests: numba style, in place, ``f(t, y, p, dydt)``.

Each entry of :data:`SUITE` is an :class:`RHSCase`: the function (plain Python,
so tests can compile it or run it on floats/complex numbers), sizes, a point
(y, p) away from kinks, and whether it is analytic (complex step applies) or
needs central differences. Together they cover: arithmetic, exp, sin, sqrt,
tanh, ``**`` in every operand kind, abs, min/max, a branch, a call to an njit
helper, scratch arrays (``similar``, ``np.empty_like``), an accumulator loop,
``np.sum``/``np.dot``, slices and ``len``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from sensitivity.ad.nb import similar


def lotka_volterra(t, y, p, dydt):
    dydt[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    dydt[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


def robertson(t, y, p, dydt):
    dydt[0] = -p[0] * y[0] + p[1] * y[1] * y[2]
    dydt[1] = p[0] * y[0] - p[1] * y[1] * y[2] - p[2] * y[1] ** 2
    dydt[2] = p[2] * y[1] ** 2


def reaction_diffusion(t, y, p, dydt):
    # 1-D Fisher-KPP on (0, 1), zero Dirichlet ends: p = (diffusivity, growth rate)
    n = len(y)
    h2 = 1.0 / ((n + 1.0) * (n + 1.0))
    for i in range(n):
        left = y[i - 1] if i > 0 else 0.0
        right = y[i + 1] if i < n - 1 else 0.0
        dydt[i] = p[0] * (left - 2.0 * y[i] + right) / h2 + p[1] * y[i] * (1.0 - y[i])


def stencil(t, y, p, dydt):
    # exp, sin, sqrt, tanh, ** (dual**float, float**dual, dual**dual, dual**int),
    # abs, min/max and a branch; analytic away from the kinks of abs/min/max.
    n = len(y)
    dydt[:] = 0.0
    for i in range(1, n - 1):
        lap = y[i + 1] - 2.0 * y[i] + y[i - 1]
        r = p[0] * lap - np.exp(-abs(y[i])) + np.sin(p[1] * y[i])
        r += np.sqrt(y[i] * y[i] + 1.0) * np.tanh(y[i - 1]) + y[i] ** 1.5
        r += p[1] ** y[i] + y[i] ** p[0] + y[i + 1] ** 3
        r += max(y[i], p[1]) - min(y[i + 1], 0.5) + np.maximum(y[i - 1], 0.3)
        if y[i] > 0.6:
            r = r * y[i] - t
        else:
            r = r / (1.0 + y[i])
        dydt[i] = r
    dydt[0] = p[1] * (y[1] - y[0])
    dydt[-1] = p[1] * (y[-2] - y[-1])


@njit(cache=True)
def _flux(a, b, k):
    return k * (b - a) * (1.0 + 0.1 * a * a)


def helper_call(t, y, p, dydt):
    n = len(y)
    for i in range(n):
        left = _flux(y[i - 1], y[i], p[i]) if i > 0 else 0.0
        right = _flux(y[i], y[i + 1], p[i]) if i < n - 1 else 0.0
        dydt[i] = right - left + np.cos(t * y[i])


def scratch(t, y, p, dydt):
    n = len(y)
    tmp = similar(y, p)  # dual whenever y or p is
    work = np.empty_like(tmp)
    for i in range(n):
        tmp[i] = np.log(1.0 + y[i] * y[i]) * p[i % len(p)]
        work[i] = tmp[i] * y[i]
    inner = tmp[1:-1]
    dydt[0] = tmp[0] - work[n - 1]
    dydt[1:-1] = inner
    dydt[n - 1] = np.arctan(work[0]) + len(inner) * 0.0
    for i in range(1, n - 1):
        dydt[i] = dydt[i] + work[i] * np.cosh(0.1 * y[i])


def accumulator(t, y, p, dydt):
    n = len(y)
    s = 0.0
    for i in range(n):
        s += p[i % len(p)] * y[i] * y[i]
    total = np.sum(y)
    d = np.dot(y, y)
    dp = np.dot(p[:n], y) if len(p) >= n else np.dot(y[: len(p)], p)
    for i in range(n):
        dydt[i] = s * y[i] - total / (1.0 + d) + dp * np.expm1(0.1 * y[i])


@dataclass(frozen=True)
class RHSCase:
    """A test right-hand side with its sizes and an evaluation point."""

    name: str
    f: object
    n: int
    m: int
    analytic: bool
    seed: int = 0

    def point(self):
        rng = np.random.default_rng(self.seed)
        y = rng.uniform(0.2, 1.0, self.n)
        p = rng.uniform(0.5, 1.5, self.m)
        return 0.3, y, p


SUITE = [
    RHSCase("lotka_volterra", lotka_volterra, 2, 4, True),
    RHSCase("robertson", robertson, 3, 3, True),
    RHSCase("stencil", stencil, 9, 2, False),
    RHSCase("helper_call", helper_call, 7, 7, True),
    RHSCase("scratch", scratch, 6, 3, True),
    RHSCase("accumulator", accumulator, 5, 5, True),
]
CASES = {c.name: c for c in SUITE}


def evaluate(f, t, y, p):
    """Evaluate ``f`` on plain (float or complex) arrays, returning dydt."""
    dtype = np.result_type(y, p, float)
    out = np.zeros(len(y), dtype=dtype)
    f(t, y.astype(dtype), p.astype(dtype), out)
    return out


def reference_jacobians(case, t, y, p):
    """df/dy and df/dp by complex step (analytic cases) or 4th-order central FD."""
    n, m = case.n, case.m

    def column(fun, x, j):
        if case.analytic:
            h = 1e-30
            xc = x.astype(complex)
            xc[j] += 1j * h
            return fun(xc).imag / h
        h = 1e-3 * max(1.0, abs(x[j]))
        cols = []
        for s in (-2, -1, 1, 2):
            xs = x.copy()
            xs[j] += s * h
            cols.append(fun(xs).real)
        return (cols[0] - 8 * cols[1] + 8 * cols[2] - cols[3]) / (12 * h)

    def fy(yy):
        return evaluate(case.f, t, yy, p.astype(yy.dtype))

    def fp(pp):
        return evaluate(case.f, t, y.astype(pp.dtype), pp)

    Jy = np.column_stack([column(fy, y, j) for j in range(n)])
    Jp = np.column_stack([column(fp, p, j) for j in range(m)])
    return Jy, Jp


# ---- adjoint tests (tests/test_adjoint_continuous.py, tests/test_adjoint_bdf.py) ----------


def heat(t, u, k, du):
    """Finite volumes for u_t = (k u_x)_x on [0, 1], u = 0 at both ends (faces at half a cell)."""
    n = u.shape[0]
    inv = n * n * 1.0
    for i in range(n):
        du[i] = 0.0
    du[0] -= 2.0 * k[0] * u[0] * inv
    du[n - 1] -= 2.0 * k[n - 1] * u[n - 1] * inv
    for i in range(n - 1):
        kf = 2.0 * k[i] * k[i + 1] / (k[i] + k[i + 1])
        flux = kf * (u[i + 1] - u[i]) * inv
        du[i] += flux
        du[i + 1] -= flux


def g_point(t, y, p):
    """A point objective for Lotka-Volterra."""
    return y[0] * y[0] * p[1] + np.sin(y[1]) * t


def g_rober(t, y, p):
    """A point objective for Robertson."""
    return y[0] * y[0] + 1e4 * y[1] + y[2] * t


def g_int(t, y, p):
    """An integrand for Lotka-Volterra."""
    return y[0] * y[1] * p[0] + np.cos(t) * y[1] ** 2


def g_heat(t, u, k):
    """An integrand for the heat problem."""
    return u[3] * u[3] * k[2] + t * u[5]
