"""Dot-product test of the BDF discrete adjoint against an independent tangent-linear model.

The adjoint (:func:`sensitivity.sens.bdf_adjoint.bdf_adjoint`) claims to be the transpose of
the BDF (NDF) step map of its module docstring, with the steps and orders of the forward
solve frozen and every corrector solved exactly. Here that map is rebuilt from its
definition, without the library's tables: the rescaling of the differences to a new step
size from Newton's backward interpolation, the NDF coefficients from [1], the dense output
from the binomial weights. Its tangent (TLM) is checked twice:

* against central differences of the same map replayed with exact Newton solves (so the
  TLM is the derivative of the computed solution, not merely some linear map), and that
  replay against the solver's own steps (so the map is the one the solver runs);
* ``<TLM(dp, dy0), W> = <(dp, dy0), ADJ(W)>`` to 1e-12, ADJ the library's reverse sweep
  fed the cotangent W as its observation weights (``obs_g``), on the compiled sweep and
  on the banded-LU sweep. A perturbed transpose or a defective TLM fails it.

References
----------
.. [1] L. F. Shampine, M. W. Reichelt, "The MATLAB ODE suite", SIAM J. Sci. Comput. 18
   (1997) 1-22 (Table 1: the NDF coefficients kappa).
"""

from math import comb

import numpy as np
import pytest
import scipy.sparse as sp

import sensitivity as sn
from sensitivity.ode import bdf, linsolve
from sensitivity.sens import bdf_adjoint as ba
from sensitivity.testing import dot_product_test
from tests.rhs_suite import heat, lotka_volterra, robertson

KAPPA = np.array([0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0])  # [1], Table 1
GAMMA = np.array([sum(1.0 / i for i in range(1, j + 1)) for j in range(6)])
ALPHA = (1.0 - KAPPA) * GAMMA


def rescale(k, rho):
    """(k+1, k+1) map from differences at step h to differences at step rho h.

    The differences D_j = nabla^j y_n give the values y(t_n - m h) = sum_j (-1)^j C(m, j) D_j
    (m = 0 ... k); the interpolating polynomial through them is evaluated at
    t_n - m rho h (Lagrange in units of h), and differenced again.
    """
    m = np.arange(k + 1)
    to_values = np.array([[(-1.0) ** j * comb(i, j) for j in m] for i in m])
    lagrange = np.array(
        [[np.prod([(rho * a - b) / (c - b) for b in m if b != c]) for c in m] for a in m]
    )
    to_diffs = np.array([[(-1.0) ** i * comb(j, i) for i in m] for j in m])
    return to_diffs @ lagrange @ to_values


def dense_weights(s, k):
    """w_j(s) = C(s + j - 1, j): y(t_new + s h) = sum_j w_j D'_j (Newton backward form)."""
    return np.array([np.prod([(s + m) / (m + 1) for m in range(j)]) for j in range(k + 1)])


def dense(A):
    return A.toarray() if sp.issparse(A) else np.asarray(A)


class StepMap:
    """The frozen-step BDF map of a dense BDF solution: replay and tangent.

    Parameters
    ----------
    prob : ODEProblem
    sol : Solution
        From a BDF solve with ``dense=True``.
    t_obs : ndarray, shape (nt,)
    """

    def __init__(self, prob, sol, t_obs):
        self.prob = prob
        self.t, self.h, self.y, Q, _ = sol.segments
        # order of step i: the highest power of s in its interpolant
        self.k = np.array([1 + np.flatnonzero(row).max() for row in Q.any(axis=1)])
        self.obs = []  # (index in t_obs, step, s); step -1 is t0 itself
        for o, to in enumerate(t_obs):
            if to == self.t[0]:
                self.obs.append((o, -1, 0.0))
                continue
            i = int(np.searchsorted(self.t, to, side="left")) - 1
            self.obs.append((o, i, (to - self.t[i + 1]) / (self.t[i + 1] - self.t[i])))
        self.nt = len(t_obs)

    def _steps(self):
        """(i, k, E-map, c) for every step."""
        for i, (k, h) in enumerate(zip(self.k, self.h)):
            rho = h / self.h[i - 1] if i > 0 else 1.0
            yield i, int(k), rescale(int(k), rho), h / ALPHA[k]

    def _observe(self, out, i, Dn, k):
        for o, step, s in self.obs:
            if step == i:
                out[o] = dense_weights(s, k) @ Dn[: k + 1]

    def replay(self, p, y0, newton_tol=1e-14):
        """Observations (nt, n) and states y_{n+1} (N, n) of the map, correctors solved exactly.

        Full Newton (a fresh J every iteration) until the update is at round-off.
        """
        prob, n = self.prob, self.prob.n
        out, ys = np.zeros((self.nt, n)), np.zeros((self.h.size, n))
        D = np.zeros((7, n))
        D[0], D[1] = y0, self.h[0] * prob.rhs(self.t[0], y0, p)
        self._observe(out, -1, D, 0)
        for i, k, M, c in self._steps():
            E = M @ D[: k + 1]
            y_pred, psi = E.sum(axis=0), GAMMA[1 : k + 1] @ E[1:] / ALPHA[k]
            d, t_new = np.zeros(n), self.t[i + 1]
            for _ in range(50):
                r = d - c * prob.rhs(t_new, y_pred + d, p) + psi
                J = dense(prob.jacobian(t_new, y_pred + d, p))
                dd = np.linalg.solve(np.eye(n) - c * J, -r)
                d += dd
                if np.abs(dd).max() <= newton_tol * (1.0 + np.abs(y_pred).max()):
                    break
            else:
                raise AssertionError(f"the corrector of step {i} did not converge")
            D = np.zeros((7, n))
            D[: k + 1] = np.cumsum(E[::-1], axis=0)[::-1] + d
            D[k + 1] = d
            ys[i] = D[0]
            self._observe(out, i, D, k)
        return out, ys

    def tangent(self, p, y0, dp, dy0, defect=None):
        """d(observations) (nt, n) for the direction (dp, dy0).

        ``defect`` plants an error to show the dot test can fail: "stale_jacobian"
        (J and f_p at y_n instead of y_{n+1}), "no_rescale" (rho = 1 throughout).
        """
        prob, n = self.prob, self.prob.n
        out, dD = np.zeros((self.nt, n)), np.zeros((7, n))
        J0, F0 = (
            dense(prob.jacobian(self.t[0], y0, p)),
            dense(prob.param_jacobian(self.t[0], y0, p)),
        )
        dD[0], dD[1] = dy0, self.h[0] * (J0 @ dy0 + F0 @ dp)
        self._observe(out, -1, dD, 0)
        y_prev = y0
        for i, k, M, c in self._steps():
            if defect == "no_rescale":
                M = np.eye(k + 1)
            dE = M @ dD[: k + 1]
            dy_pred, dpsi = dE.sum(axis=0), GAMMA[1 : k + 1] @ dE[1:] / ALPHA[k]
            t_new, y_new = self.t[i + 1], self.y[i]
            y_lin = y_prev if defect == "stale_jacobian" else y_new
            J, F = (
                dense(prob.jacobian(t_new, y_lin, p)),
                dense(prob.param_jacobian(t_new, y_lin, p)),
            )
            dd = np.linalg.solve(np.eye(n) - c * J, c * (J @ dy_pred + F @ dp) - dpsi)
            dD = np.zeros((7, n))
            dD[: k + 1] = np.cumsum(dE[::-1], axis=0)[::-1] + dd
            dD[k + 1] = dd
            self._observe(out, i, dD, k)
            y_prev = y_new
        return out


N = 20
X = (np.arange(N) + 0.5) / N
PATTERN = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(N, N))


def case(name):
    """(prob, t_obs, rtol, atol): observations at t0, between steps and at the final time."""
    if name == "robertson":
        prob = sn.ODEProblem(robertson, [1.0, 0.0, 0.0], (0.0, 40.0), [0.04, 1e4, 3e7])
        return prob, np.array([0.0, 0.37, 4.1, 40.0]), 1e-6, np.array([1e-8, 1e-14, 1e-6])
    if name == "lotka_volterra":
        prob = sn.ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 5.0), [1.5, 1.0, 3.0, 1.0])
        return prob, np.array([0.0, 1.234, 3.0, 3.77, 5.0]), 1e-6, 1e-8
    u0 = np.sin(np.pi * X) + 0.5 * np.sin(3 * np.pi * X)
    k = 1 + 0.5 * np.sin(2 * np.pi * X)
    pat = PATTERN if name == "diffusion_banded" else None
    prob = sn.ODEProblem(heat, u0, (0.0, 0.1), k, jac_sparsity=pat, param_sparsity=pat)
    return prob, np.array([0.0, 0.0137, 0.05, 0.1]), 1e-6, 1e-8


def setup(name):
    prob, t_obs, rtol, atol = case(name)
    # the adjoint's forward pass solves every corrector to scipy's tolerance (BDF.nls_coef)
    meth = bdf.BDF().exact_corrector()
    sol = sn.solve(prob, method=meth, t_eval=t_obs, rtol=rtol, atol=atol, dense=True)
    assert sol.success
    return prob, sol, t_obs, StepMap(prob, sol, t_obs)


def direction(prob, seed):
    """A random (dp, dy0) scaled like p and y0 (Robertson's p spans 1e-2 ... 3e7)."""
    rng = np.random.default_rng(seed)
    dp = rng.standard_normal(prob.m) * np.abs(prob.p)
    dy0 = rng.standard_normal(prob.n) * max(np.abs(prob.y0).max(), 1e-3)
    return np.concatenate([dp, dy0])


def dot_test(prob, sol, t_obs, smap, seed=0, defect=None):
    p, y0, m = prob.p, prob.y0, prob.m

    def forward(v):
        return smap.tangent(p, y0, v[:m], v[m:], defect=defect)

    def adjoint(W):
        gp, gy0 = ba.bdf_adjoint(prob, sol, t_obs, W, p, y0)
        return np.concatenate([gp, gy0])

    return dot_product_test(forward, adjoint, direction(prob, seed), seed=seed, rtol=1e-12)


CASES = ["robertson", "lotka_volterra", "diffusion", "diffusion_banded"]


def test_the_map_is_built_from_its_definition():
    # the rescale from interpolation and the NDF coefficients agree with the solver's
    for k in range(1, 6):
        for rho in (0.3, 1.0, 1.7):
            np.testing.assert_allclose(rescale(k, rho).T, ba.rescale_matrix(k, rho), atol=1e-12)
        np.testing.assert_allclose(dense_weights(-0.4, k), ba.dense_weights(-0.4, k), atol=1e-15)
    np.testing.assert_allclose(ALPHA, bdf.ALPHA, rtol=1e-15)
    np.testing.assert_allclose(GAMMA, bdf.GAMMA, rtol=1e-15)


@pytest.mark.parametrize("name", CASES[:3])  # (the banded case has the same map)
def test_tangent_is_the_derivative_of_the_solvers_map(name):
    prob, sol, t_obs, smap = setup(name)
    # orders 1 to 5 and varying step sizes: every rescale of the map is exercised
    assert len(set(smap.k)) == 5 and len(np.unique(smap.h)) > 5
    # the replayed map is the solver's, up to the solver's Newton tolerance (1e-3 of the
    # error scale per step, accumulated: up to 0.014 here); a wrong map is far off (the
    # rescale transposed: 4e4 on Robertson)
    obs, ys = smap.replay(prob.p, prob.y0)
    _, rtol, atol = case(name)[1:]
    assert np.all(np.abs(ys - smap.y) <= 0.05 * (atol + rtol * np.abs(smap.y)))
    assert np.all(np.abs(obs - sol.y) <= 0.05 * (atol + rtol * np.abs(sol.y)))
    # the TLM against central differences of the replay, steps and orders frozen
    v, m = direction(prob, 7), prob.m
    tlm = smap.tangent(prob.p, prob.y0, v[:m], v[m:])
    eps = 1e-6
    plus = smap.replay(prob.p + eps * v[:m], prob.y0 + eps * v[m:])[0]
    minus = smap.replay(prob.p - eps * v[:m], prob.y0 - eps * v[m:])[0]
    fd = (plus - minus) / (2 * eps)
    assert np.abs(tlm - fd).max() <= 1e-6 * np.abs(tlm).max()


@pytest.mark.parametrize("name", CASES)
def test_dot_product_bdf_adjoint(name, request):
    if name == "diffusion_banded":  # the Python sweep with banded LU instead of the kernel
        request.getfixturevalue("patterned_lu")
    prob, sol, t_obs, smap = setup(name)
    for seed in (0, 1):
        res = dot_test(prob, sol, t_obs, smap, seed=seed)
        assert res.passed and res.rel_error < 1e-12, res


@pytest.mark.parametrize("defect", ["stale_jacobian", "no_rescale"])
def test_a_defective_tangent_fails_the_dot_test(defect):
    prob, sol, t_obs, smap = setup("diffusion")
    assert not dot_test(prob, sol, t_obs, smap, defect=defect).passed


@pytest.mark.usefixtures("patterned_lu")
def test_a_perturbed_transpose_fails_the_dot_test(monkeypatch):
    # the Python-level sweep (LAPACK band LU; taken here by turning the compiled banded
    # path off) rebuilds each step's rescale with ba.rescale_matrix: a relative error of
    # 1e-7 in its rho is caught (and shows this case runs that sweep)
    monkeypatch.setattr(linsolve, "band", lambda prob: None)
    prob, sol, t_obs, smap = setup("diffusion_banded")
    assert dot_test(prob, sol, t_obs, smap).passed
    exact = ba.rescale_matrix
    monkeypatch.setattr(ba, "rescale_matrix", lambda k, rho: exact(k, rho * (1 + 1e-7)))
    assert not dot_test(prob, sol, t_obs, smap).passed
