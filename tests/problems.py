"""Registry of reference problems, with a test-only stand-in for ODEProblem.

``ODEProblem`` is written on another branch; until it lands, :func:`make_problem` builds
an object with the attributes the solvers use (``f, y0, p, t_span, n, m, rhs_kernel,
jac_kernel, jac_sparsity, jacobian, compile``) from hand-written numba functions.

Reference solutions: Test Set for IVP Solvers (Mazzia & Magherini, release 2.4, 2008;
``solut`` subroutines: HIRES, POLLU, OREGO, VDPOL, ROBER), E5 from Hairer & Wanner II
(Enright, Hull & Lindberg 1975; values of Hairer's test set), and the Arenstorf orbit
(Hairer, Norsett & Wanner I, II.0: periodic with the period below).
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import numba
import numpy as np

from sensitivity._lazy import LazyModule

sp = LazyModule("scipy.sparse")  # as in the package: keeps first-call latency measurable


def make_problem(rhs, y0, t_span, p, jac=None, jac_sparsity=None, compile=True):
    """Return a stand-in ODEProblem; ``rhs``/``jac`` are numba dispatchers (or Python)."""
    y0 = np.asarray(y0, dtype=float)
    p = np.asarray(p, dtype=float)
    rhs_k = rhs if compile else getattr(rhs, "py_func", rhs)
    jac_k = jac if compile or jac is None else getattr(jac, "py_func", jac)

    def jacobian(t, y):
        J = np.zeros((y0.size, y0.size))
        jac_k(t, np.ascontiguousarray(y, dtype=float), p, J)
        return sp.csr_matrix(J) if jac_sparsity is not None else J

    return types.SimpleNamespace(
        f=rhs,
        y0=y0,
        p=p,
        t_span=tuple(map(float, t_span)),
        n=y0.size,
        m=p.size,
        rhs_kernel=rhs_k,
        jac_kernel=jac_k,
        param_jac_kernel=None,
        jac_sparsity=jac_sparsity,
        jacobian=jacobian,
        compile=compile,
    )


@numba.njit(cache=True)
def lotka_volterra(t, y, p, dydt):
    dydt[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    dydt[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


@numba.njit(cache=True)
def lotka_volterra_jac(t, y, p, J):
    J[0, 0] = p[0] - p[1] * y[1]
    J[0, 1] = -p[1] * y[0]
    J[1, 0] = p[3] * y[1]
    J[1, 1] = -p[2] + p[3] * y[0]


@numba.njit(cache=True)
def linear(t, y, p, dydt):
    """y' = A y with A = p.reshape(n, n)."""
    n = y.shape[0]
    for i in range(n):
        acc = 0.0
        for j in range(n):
            acc += p[i * n + j] * y[j]
        dydt[i] = acc


@numba.njit(cache=True)
def linear_jac(t, y, p, J):
    n = y.shape[0]
    for i in range(n):
        for j in range(n):
            J[i, j] = p[i * n + j]


@numba.njit(cache=True)
def rober(t, y, p, dydt):
    dydt[0] = -p[0] * y[0] + p[1] * y[1] * y[2]
    dydt[2] = p[2] * y[1] * y[1]
    dydt[1] = -dydt[0] - dydt[2]


@numba.njit(cache=True)
def rober_jac(t, y, p, J):
    J[0, 0] = -p[0]
    J[0, 1] = p[1] * y[2]
    J[0, 2] = p[1] * y[1]
    J[2, 0] = 0.0
    J[2, 1] = 2.0 * p[2] * y[1]
    J[2, 2] = 0.0
    for j in range(3):
        J[1, j] = -J[0, j] - J[2, j]


@numba.njit(cache=True)
def hires(t, y, p, f):
    f[0] = -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007
    f[1] = 1.71 * y[0] - 8.75 * y[1]
    f[2] = -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4]
    f[3] = 8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3]
    f[4] = -1.745 * y[4] + 0.43 * y[5] + 0.43 * y[6]
    f[5] = -280.0 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6]
    f[6] = 280.0 * y[5] * y[7] - 1.81 * y[6]
    f[7] = -f[6]


@numba.njit(cache=True)
def hires_jac(t, y, p, J):
    J[:, :] = 0.0
    J[0, 0], J[0, 1], J[0, 2] = -1.71, 0.43, 8.32
    J[1, 0], J[1, 1] = 1.71, -8.75
    J[2, 2], J[2, 3], J[2, 4] = -10.03, 0.43, 0.035
    J[3, 1], J[3, 2], J[3, 3] = 8.32, 1.71, -1.12
    J[4, 4], J[4, 5], J[4, 6] = -1.745, 0.43, 0.43
    J[5, 3], J[5, 4], J[5, 5], J[5, 6], J[5, 7] = (
        0.69,
        1.71,
        -0.43 - 280.0 * y[7],
        0.69,
        (-280.0 * y[5]),
    )
    J[6, 5], J[6, 6], J[6, 7] = 280.0 * y[7], -1.81, 280.0 * y[5]
    J[7, 5], J[7, 6], J[7, 7] = -280.0 * y[7], 1.81, -280.0 * y[5]


@numba.njit(cache=True)
def orego(t, y, p, f):
    f[0] = 77.27 * (y[1] + y[0] * (1.0 - 8.375e-6 * y[0] - y[1]))
    f[1] = (y[2] - (1.0 + y[0]) * y[1]) / 77.27
    f[2] = 0.161 * (y[0] - y[2])


@numba.njit(cache=True)
def orego_jac(t, y, p, J):
    J[0, 0] = 77.27 * (1.0 - 2.0 * 8.375e-6 * y[0] - y[1])
    J[0, 1] = 77.27 * (1.0 - y[0])
    J[0, 2] = 0.0
    J[1, 0] = -y[1] / 77.27
    J[1, 1] = -(1.0 + y[0]) / 77.27
    J[1, 2] = 1.0 / 77.27
    J[2, 0] = 0.161
    J[2, 1] = 0.0
    J[2, 2] = -0.161


@numba.njit(cache=True)
def vdpol(t, y, p, f):
    """Van der Pol, mu = 1e3 in the test set's scaling: eps = 1/mu^2 = 1e-6."""
    f[0] = y[1]
    f[1] = ((1.0 - y[0] * y[0]) * y[1] - y[0]) / p[0]


@numba.njit(cache=True)
def vdpol_jac(t, y, p, J):
    J[0, 0] = 0.0
    J[0, 1] = 1.0
    J[1, 0] = (-2.0 * y[0] * y[1] - 1.0) / p[0]
    J[1, 1] = (1.0 - y[0] * y[0]) / p[0]


@numba.njit(cache=True)
def e5(t, y, p, f):
    prod1 = 7.89e-10 * y[0]
    prod2 = 1.1e7 * y[0] * y[2]
    prod3 = 1.13e9 * y[1] * y[2]
    prod4 = 1.13e3 * y[3]
    f[0] = -prod1 - prod2
    f[1] = prod1 - prod3
    f[3] = prod2 - prod4
    f[2] = f[1] - f[3]


@numba.njit(cache=True)
def e5_jac(t, y, p, J):
    a, b, cm, c = 7.89e-10, 1.1e7, 1.13e9, 1.13e3
    J[0, 0], J[0, 1], J[0, 2], J[0, 3] = -a - b * y[2], 0.0, -b * y[0], 0.0
    J[1, 0], J[1, 1], J[1, 2], J[1, 3] = a, -cm * y[2], -cm * y[1], 0.0
    J[2, 0], J[2, 1], J[2, 2], J[2, 3] = a - b * y[2], -cm * y[2], -b * y[0] - cm * y[1], c
    J[3, 0], J[3, 1], J[3, 2], J[3, 3] = b * y[2], 0.0, b * y[0], -c


POLLU_K = np.array(
    [
        0.35,
        0.266e2,
        0.123e5,
        0.86e-3,
        0.82e-3,
        0.15e5,
        0.13e-3,
        0.24e5,
        0.165e5,
        0.9e4,
        0.22e-1,
        0.12e5,
        0.188e1,
        0.163e5,
        0.48e7,
        0.35e-3,
        0.175e-1,
        0.1e9,
        0.444e12,
        0.124e4,
        0.21e1,
        0.578e1,
        0.474e-1,
        0.178e4,
        0.312e1,
    ]
)
# reaction r_i = k_i * y[a_i] (* y[b_i] when b_i >= 0)
POLLU_A = np.array(
    [0, 1, 4, 6, 6, 6, 8, 8, 10, 10, 12, 9, 13, 0, 2, 3, 3, 15, 15, 16, 18, 18, 0, 18, 19]
)
POLLU_B = np.array(
    [-1, 3, 1, -1, -1, 5, -1, 5, 1, 0, -1, 1, -1, 5, -1, -1, -1, -1, -1, 5, -1, -1, 3, 0, -1]
)
# stoichiometry: (species, reaction, coefficient)
POLLU_S = np.array(
    [
        (0, 0, -1),
        (0, 9, -1),
        (0, 13, -1),
        (0, 22, -1),
        (0, 23, -1),
        (0, 1, 1),
        (0, 2, 1),
        (0, 8, 1),
        (0, 10, 1),
        (0, 11, 1),
        (0, 21, 1),
        (0, 24, 1),
        (1, 1, -1),
        (1, 2, -1),
        (1, 8, -1),
        (1, 11, -1),
        (1, 0, 1),
        (1, 20, 1),
        (2, 14, -1),
        (2, 0, 1),
        (2, 16, 1),
        (2, 18, 1),
        (2, 21, 1),
        (3, 1, -1),
        (3, 15, -1),
        (3, 16, -1),
        (3, 22, -1),
        (3, 14, 1),
        (4, 2, -1),
        (4, 3, 2),
        (4, 5, 1),
        (4, 6, 1),
        (4, 12, 1),
        (4, 19, 1),
        (5, 5, -1),
        (5, 7, -1),
        (5, 13, -1),
        (5, 19, -1),
        (5, 2, 1),
        (5, 17, 2),
        (6, 3, -1),
        (6, 4, -1),
        (6, 5, -1),
        (6, 12, 1),
        (7, 3, 1),
        (7, 4, 1),
        (7, 5, 1),
        (7, 6, 1),
        (8, 6, -1),
        (8, 7, -1),
        (9, 11, -1),
        (9, 6, 1),
        (9, 8, 1),
        (10, 8, -1),
        (10, 9, -1),
        (10, 7, 1),
        (10, 10, 1),
        (11, 8, 1),
        (12, 10, -1),
        (12, 9, 1),
        (13, 12, -1),
        (13, 11, 1),
        (14, 13, 1),
        (15, 17, -1),
        (15, 18, -1),
        (15, 15, 1),
        (16, 19, -1),
        (17, 19, 1),
        (18, 20, -1),
        (18, 21, -1),
        (18, 23, -1),
        (18, 22, 1),
        (18, 24, 1),
        (19, 24, -1),
        (19, 23, 1),
    ],
    dtype=np.int64,
)


@numba.njit(cache=True)
def pollu(t, y, p, f):
    r = np.empty(25)
    for i in range(25):
        r[i] = POLLU_K[i] * y[POLLU_A[i]]
        if POLLU_B[i] >= 0:
            r[i] *= y[POLLU_B[i]]
    f[:] = 0.0
    for s in range(POLLU_S.shape[0]):
        f[POLLU_S[s, 0]] += POLLU_S[s, 2] * r[POLLU_S[s, 1]]


@numba.njit(cache=True)
def pollu_jac(t, y, p, J):
    J[:, :] = 0.0
    for s in range(POLLU_S.shape[0]):
        sp_, i, c = POLLU_S[s, 0], POLLU_S[s, 1], POLLU_S[s, 2]
        a, b = POLLU_A[i], POLLU_B[i]
        if b >= 0:
            J[sp_, a] += c * POLLU_K[i] * y[b]
            J[sp_, b] += c * POLLU_K[i] * y[a]
        else:
            J[sp_, a] += c * POLLU_K[i]


@numba.njit(cache=True)
def arenstorf(t, y, p, f):
    mu = p[0]
    mu1 = 1.0 - mu
    d1 = ((y[0] + mu) ** 2 + y[1] ** 2) ** 1.5
    d2 = ((y[0] - mu1) ** 2 + y[1] ** 2) ** 1.5
    f[0] = y[2]
    f[1] = y[3]
    f[2] = y[0] + 2.0 * y[3] - mu1 * (y[0] + mu) / d1 - mu * (y[0] - mu1) / d2
    f[3] = y[1] - 2.0 * y[2] - mu1 * y[1] / d1 - mu * y[1] / d2


@numba.njit(cache=True)
def diffusion(t, y, p, f):
    """1-D diffusion u_t = p0 u_xx on (0, 1), u = 0 at both ends, N interior points."""
    n = y.shape[0]
    c = p[0] * (n + 1) ** 2
    for i in range(n):
        left = y[i - 1] if i > 0 else 0.0
        right = y[i + 1] if i < n - 1 else 0.0
        f[i] = c * (left - 2.0 * y[i] + right)


@numba.njit(cache=True)
def diffusion_jac(t, y, p, J):
    n = y.shape[0]
    c = p[0] * (n + 1) ** 2
    J[:, :] = 0.0
    for i in range(n):
        J[i, i] = -2.0 * c
        if i > 0:
            J[i, i - 1] = c
        if i < n - 1:
            J[i, i + 1] = c


def diffusion_problem(N=64, t_end=0.1, sparse=True):
    """The diffusion test problem with its tridiagonal pattern and a sparse jacobian()."""
    x = np.arange(1, N + 1) / (N + 1)
    y0 = np.sin(np.pi * x) + 0.5 * np.sin(3 * np.pi * x)
    p = np.array([1.0])
    c = (N + 1) ** 2
    A = sp.diags(
        [c * np.ones(N - 1), -2 * c * np.ones(N), c * np.ones(N - 1)], [-1, 0, 1], format="csr"
    )
    prob = make_problem(
        diffusion,
        y0,
        (0.0, t_end),
        p,
        diffusion_jac,
        jac_sparsity=(A != 0).astype(float) if sparse else None,
    )
    prob.jacobian = lambda t, y: A
    lam = -(np.pi**2) * np.array([1.0, 9.0])
    exact = np.sin(np.pi * x) * np.exp(lam[0] * t_end) + 0.5 * np.sin(3 * np.pi * x) * np.exp(
        lam[1] * t_end
    )
    # the semi-discrete exact solution decays with the discrete eigenvalues
    mu = -4 * c * np.sin(np.array([1.0, 3.0]) * np.pi / (2 * (N + 1))) ** 2
    exact = np.sin(np.pi * x) * np.exp(mu[0] * t_end) + 0.5 * np.sin(3 * np.pi * x) * np.exp(
        mu[1] * t_end
    )
    return prob, exact


@dataclass(frozen=True)
class Reference:
    """A reference problem: functions, data, the published solution and a work budget."""

    name: str
    rhs: object
    jac: object
    y0: tuple
    t_span: tuple
    p: tuple
    y_ref: tuple
    rtol: float
    atol: float
    stiff: bool

    def problem(self, compile=True):
        return make_problem(self.rhs, self.y0, self.t_span, self.p, self.jac, compile=compile)


REFERENCES = {
    "HIRES": Reference(
        "HIRES",
        hires,
        hires_jac,
        (1, 0, 0, 0, 0, 0, 0, 0.0057),
        (0.0, 321.8122),
        (0.0,),
        (
            0.7371312573325668e-3,
            0.1442485726316185e-3,
            0.5888729740967575e-4,
            0.1175651343283149e-2,
            0.2386356198831331e-2,
            0.6238968252742796e-2,
            0.2849998395185769e-2,
            0.2850001604814231e-2,
        ),
        1e-6,
        1e-10,
        True,
    ),
    "POLLU": Reference(
        "POLLU",
        pollu,
        pollu_jac,
        (0, 0.2, 0, 0.04, 0, 0, 0.1, 0.3, 0.01, 0, 0, 0, 0, 0, 0, 0, 0.007, 0, 0, 0),
        (0.0, 60.0),
        (0.0,),
        (
            0.5646255480022769e-01,
            0.1342484130422339e00,
            0.4139734331099427e-08,
            0.5523140207484359e-02,
            0.2018977262302196e-06,
            0.1464541863493966e-06,
            0.7784249118997964e-01,
            0.3245075353396018e00,
            0.7494013383880406e-02,
            0.1622293157301561e-07,
            0.1135863833257075e-07,
            0.2230505975721359e-02,
            0.2087162882798630e-03,
            0.1396921016840158e-04,
            0.8964884856898295e-02,
            0.4352846369330103e-17,
            0.6899219696263405e-02,
            0.1007803037365946e-03,
            0.1772146513969984e-05,
            0.5682943292316392e-04,
        ),
        1e-6,
        1e-10,
        True,
    ),
    "OREGO": Reference(
        "OREGO",
        orego,
        orego_jac,
        (1.0, 2.0, 3.0),
        (0.0, 360.0),
        (0.0,),
        (0.1000814870318523e1, 0.1228178521549917e4, 0.1320554942846706e3),
        1e-7,
        1e-7,
        True,
    ),
    "VDPOL": Reference(
        "VDPOL",
        vdpol,
        vdpol_jac,
        (2.0, 0.0),
        (0.0, 2.0),
        (1e-6,),
        (0.1706167732170483e1, -0.8928097010247975e0),
        1e-6,
        1e-6,
        True,
    ),
    "ROBER": Reference(
        "ROBER",
        rober,
        rober_jac,
        (1.0, 0.0, 0.0),
        (0.0, 1e11),
        (0.04, 1e4, 3e7),
        (0.2083340149701255e-7, 0.8333360770334713e-13, 0.9999999791665050),
        1e-6,
        1e-12,
        True,
    ),
    "E5": Reference(
        "E5",
        e5,
        e5_jac,
        (1.76e-3, 0.0, 0.0, 0.0),
        (0.0, 1e5),
        (0.0,),
        (
            7.4813208224292220114e-006,
            2.3734781561205975019e-012,
            2.2123586689581663654e-012,
            1.6111948716243113653e-013,
        ),
        1e-6,
        1e-20,
        True,
    ),
    "AREN": Reference(
        "AREN",
        arenstorf,
        None,
        (0.994, 0.0, 0.0, -2.00158510637908252240537862224),
        (0.0, 17.0652165601579625588917206249),
        (0.012277471,),
        (0.994, 0.0, 0.0, -2.00158510637908252240537862224),
        1e-10,
        1e-10,
        False,
    ),
}
