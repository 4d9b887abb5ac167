"""The 1-D diffusion problem of issue 6, its exact gradient, and the peers' gradients.

``u_t = (k u_x)_x`` on [0, 1] with N finite-volume cells (faces at half a cell at the
boundaries, where u = 0), harmonic-mean face conductivities. The semi-discrete system
``u' = A(k) u`` is linear with A symmetric tridiagonal: with ``A = V diag(lam) V^T``,
``u(t) = V exp(lam t) V^T u0`` and the misfit gradient is

    dL/dtheta = sum_j sum_ab (V^T A_theta V)_ab b_ja c_b phi_j(a, b),
    phi_j(a, b) = (exp(lam_b t_j) - exp(lam_a t_j)) / (lam_b - lam_a),

with ``b_j = V^T E^T r_j`` (E the sensor selection, r_j the residuals) and ``c = V^T u0``.
"""

from __future__ import annotations

import time
import tracemalloc

import numba
import numpy as np
from _timing import median
from scipy.integrate import solve_ivp
from scipy.linalg import eigh_tridiagonal
from scipy.sparse import diags


@numba.njit(cache=True)
def heat(t, u, k, du):
    n = u.shape[0]
    inv = n * n * 1.0
    for i in range(n):
        du[i] = 0.0
    du[0] -= 2.0 * k[0] * u[0] * inv  # boundary faces at half a cell
    du[n - 1] -= 2.0 * k[n - 1] * u[n - 1] * inv
    for i in range(n - 1):
        kf = 2.0 * k[i] * k[i + 1] / (k[i] + k[i + 1])
        flux = kf * (u[i + 1] - u[i]) * inv
        du[i] += flux
        du[i + 1] -= flux


def setup(n):
    """Cell centres, u0, k, sensor cells and observation times."""
    x = (np.arange(n) + 0.5) / n
    u0 = np.sin(np.pi * x) + 0.5 * np.sin(3 * np.pi * x)
    k = 1 + 0.5 * np.sin(2 * np.pi * x)
    sensors = np.floor(np.array([0.1, 0.3, 0.5, 0.7, 0.9]) * n).astype(int)
    return x, u0, k, sensors, 0.005 * np.arange(1, 21)


def tridiag(k):
    """Diagonal and off-diagonal of A(k)."""
    n = k.size
    kf = 2 * k[:-1] * k[1:] / (k[:-1] + k[1:])
    d = np.zeros(n)
    d[:-1] -= kf
    d[1:] -= kf
    d[0] -= 2 * k[0]
    d[-1] -= 2 * k[-1]
    return d * n * n, kf * n * n


def exact(k, u0, sensors, ts, data=None):
    """Sensor values (nt, 5); with ``data``, the misfit and its exact gradient (N,)."""
    n = k.size
    d, e = tridiag(k)
    lam, V = eigh_tridiagonal(d, e)
    c = V.T @ u0
    U = (np.exp(np.outer(ts, lam)) * c) @ V[sensors].T
    if data is None:
        return U
    r = U - data
    M = np.zeros((n, n))
    dl = lam[:, None] - lam[None, :]
    same = np.abs(dl) <= 1e-12 * np.abs(lam).max()
    for j, t in enumerate(ts):
        b = V[sensors].T @ r[j]
        ea = np.exp(lam * t)
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = (ea[:, None] - ea[None, :]) / dl
        phi[same] = np.broadcast_to((t * ea)[:, None], (n, n))[same]
        M += np.outer(b, c) * phi
    VM = V @ M
    diag = np.einsum("ij,ij->i", VM, V)
    off = np.einsum("ij,ij->i", VM[:-1], V[1:]) + np.einsum("ij,ij->i", VM[1:], V[:-1])
    inv = n * n
    g_face = -(diag[:-1] + diag[1:] - off) * inv
    a, b = k[:-1], k[1:]
    grad = np.zeros(n)
    grad[:-1] += g_face * 2 * b**2 / (a + b) ** 2
    grad[1:] += g_face * 2 * a**2 / (a + b) ** 2
    grad[0] -= 2 * diag[0] * inv
    grad[-1] -= 2 * diag[-1] * inv
    return 0.5 * float(np.sum(r * r)), grad


def peak_memory(fn):
    """Run fn once under tracemalloc; return (result, peak bytes)."""
    tracemalloc.start()
    try:
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return out, peak


def casadi_gradient(u0, k, sensors, ts, data, max_n=4096):
    """CasADi CVODES: (gradient seconds, solve seconds, gradient) or None if unavailable."""
    try:
        import casadi as ca
    except ImportError:
        return None
    n = k.size
    if n > max_n:
        return None
    u, kk = ca.MX.sym("u", n), ca.MX.sym("k", n)
    kf = 2 * kk[:-1] * kk[1:] / (kk[:-1] + kk[1:])
    flux = kf * (u[1:] - u[:-1]) * n * n
    du = ca.vertcat(flux[:1], flux[1:] - flux[:-1], -flux[-1:])
    du = du - 2 * n * n * ca.vertcat(kk[0] * u[0], ca.MX.zeros(n - 2, 1), kk[-1] * u[-1])
    # sparse direct linear solver (the default dense LU is O(N^3) per factorisation)
    opts = {"abstol": 1e-8, "reltol": 1e-6, "linear_solver": "csparse"}
    F = ca.integrator("F", "cvodes", {"x": u, "p": kk, "ode": du}, 0.0, list(ts), opts)
    kp = ca.MX.sym("kp", n)
    X = F(x0=u0, p=kp)["xf"]  # (n, nt)
    res = X[list(sensors), :] - ca.DM(data.T)
    L = 0.5 * ca.sumsqr(res)
    solve = ca.Function("solve", [kp], [X])
    grad = ca.Function("grad", [kp], [L, ca.gradient(L, kp)])
    rep = 3 if n <= 256 else 1
    t_solve = median(lambda: solve(k), rep)
    t_grad = median(lambda: grad(k), rep)
    return t_grad, t_solve, np.asarray(grad(k)[1]).ravel()


def scipy_fd_gradient(u0, k, sensors, ts, data, timed_max_n=64):
    """scipy BDF, central differences: (seconds, extrapolated?)."""
    n = k.size
    d, e = tridiag(k)
    A = diags([e, d, e], [-1, 0, 1], format="csc")

    def misfit(kv):
        dd, ee = tridiag(kv)
        Ak = diags([ee, dd, ee], [-1, 0, 1], format="csc")
        sol = solve_ivp(lambda t, y: Ak @ y, (0, 0.1), u0, "BDF", ts, rtol=1e-6, atol=1e-8, jac=Ak)
        return 0.5 * np.sum((sol.y[sensors].T - data) ** 2)

    del A
    if n <= timed_max_n:
        t0 = time.perf_counter()
        h = 1e-6
        for i in range(n):
            ei = np.zeros(n)
            ei[i] = h
            misfit(k + ei) - misfit(k - ei)
        return time.perf_counter() - t0, False
    t_one = median(lambda: misfit(k), 1)
    return 2 * n * t_one, True
