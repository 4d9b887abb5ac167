"""Problems and finite-difference references shared by the forward-sensitivity tests."""

import numpy as np
from scipy.linalg import expm

from sensitivity.ode.solve import solve

LV_P = np.array([1.5, 1.0, 3.0, 1.0])
LV_T = np.linspace(0.0, 10.0, 21)


def linear(t, y, p, dydt):
    # y' = A(p) y with A = [[-p0, p1], [-p1, -p0 - p2]]
    dydt[0] = -p[0] * y[0] + p[1] * y[1]
    dydt[1] = -p[1] * y[0] - (p[0] + p[2]) * y[1]


def linear_A(p):
    return np.array([[-p[0], p[1]], [-p[1], -p[0] - p[2]]])


def linear_exact(p, y0, t):
    """y(t) and dy/dp(t) from the block matrix exponential expm([[A, dA], [0, A]] t)."""
    A = linear_A(p)
    dA = [
        np.array([[-1.0, 0], [0, -1]]),
        np.array([[0, 1.0], [-1, 0]]),
        np.array([[0, 0], [0, -1.0]]),
    ]
    y = expm(A * t) @ y0
    S = np.empty((2, 3))
    for j in range(3):
        B = np.block([[A, dA[j]], [np.zeros((2, 2)), A]])
        S[:, j] = expm(B * t)[:2, 2:] @ y0
    return y, S


def unused_parameter(t, y, p, dydt):
    dydt[0] = -p[0] * y[0]
    dydt[1] = p[0] * y[0] - 0.5 * y[1]


def fd_jacobian(make, p, ts, method, h=1e-6, rtol=1e-12, atol=1e-14):
    cols = []
    for j in range(p.size):
        dp = h * max(1.0, abs(p[j]))
        e = np.zeros(p.size)
        e[j] = dp
        hi = solve(make(p + e), method=method, t_eval=ts, rtol=rtol, atol=atol).y
        lo = solve(make(p - e), method=method, t_eval=ts, rtol=rtol, atol=atol).y
        cols.append((hi - lo) / (2 * dp))
    return np.stack(cols, -1)
