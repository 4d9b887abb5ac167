"""Discrete adjoint of BDF: exact at fixed steps, against forward sensitivities."""

import numpy as np
import pytest
import scipy.sparse as sp

import sensitivity as sn
import sensitivity.ode.solve as ode_solve
from sensitivity.testing import taylor_test
from tests.rhs_suite import g_heat, g_rober, heat, robertson

N = 12
X = (np.arange(N) + 0.5) / N
U0 = np.sin(np.pi * X) + 0.5 * np.sin(3 * np.pi * X)
K0 = 1 + 0.5 * np.sin(2 * np.pi * X)
TS = np.array([0.0, 0.013, 0.05, 0.1])  # at t0, between steps, at the end
SENSORS = [1, 6, 10]
PATTERN = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(N, N))


def heat_problem(k=K0, u0=U0, sparse=False):
    pat = PATTERN if sparse else None
    return sn.ODEProblem(heat, u0, (0.0, 0.1), k, jac_sparsity=pat, param_sparsity=pat)


@pytest.fixture
def fixed_steps(monkeypatch):
    """Equal steps of 0.004 at loose tolerances: orders 1 to 5, no rejections."""
    orig = ode_solve.Solver.__init__

    def capped(self, *a, **k):
        k["max_step"] = k["first_step"] = 0.004
        orig(self, *a, **k)

    monkeypatch.setattr(ode_solve.Solver, "__init__", capped)


OBJ = sn.L2Misfit(TS, np.full((TS.size, len(SENSORS)), 0.3), observe=SENSORS)
LOOSE = dict(kind="discrete", method="BDF", rtol=1e-1, atol=1e3)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.usefixtures("patterned_lu")
def test_exact_gradient_of_the_computed_solution(fixed_steps, sparse):
    obj = OBJ + sn.IntegralObjective(g_heat, t_span=(0.01, 0.07))
    r = sn.adjoint_gradient(heat_problem(sparse=sparse), obj, **LOOSE)
    assert r.success and r.stats["nreject"] == 0 and r.stats["nsteps"] == 25

    def value(k=K0, u0=U0):
        return sn.adjoint_gradient(heat_problem(k, u0, sparse), obj, **LOOSE).value

    h, rng = 1e-6, np.random.default_rng(3)
    for _ in range(2):  # directional differences against the gradient
        dk, du = rng.standard_normal(N), rng.standard_normal(N)
        fd_k = (value(k=K0 + h * dk) - value(k=K0 - h * dk)) / (2 * h)
        fd_u = (value(u0=U0 + h * du) - value(u0=U0 - h * du)) / (2 * h)
        assert abs(r.grad_p @ dk - fd_k) < 1e-7 * np.abs(r.grad_p).sum()
        assert abs(r.grad_y0 @ du - fd_u) < 1e-7 * np.abs(r.grad_y0).sum()
    res = taylor_test(value, K0, r.grad_p, eps0=1e-2)
    assert res.passed and res.min_rate > 1.95


@pytest.mark.usefixtures("patterned_lu")
def test_sparse_and_dense_sweeps_agree():
    kw = dict(kind="discrete", method="BDF", rtol=1e-6, atol=1e-8)
    a = sn.adjoint_gradient(heat_problem(sparse=False), OBJ, **kw)
    b = sn.adjoint_gradient(heat_problem(sparse=True), OBJ, **kw)
    assert a.stats["nsteps"] == b.stats["nsteps"]
    assert np.allclose(a.grad_p, b.grad_p, rtol=1e-10, atol=0)
    assert np.allclose(a.grad_y0, b.grad_y0, rtol=1e-10, atol=1e-14)


def test_robertson_against_forward_sensitivities():
    p, ts = np.array([0.04, 1e4, 3e7]), np.array([0.0, 0.4, 1.0, 4.0, 10.0, 40.0])
    prob = sn.ODEProblem(robertson, [1.0, 0.0, 0.0], (0.0, 40.0), p)
    obj = sn.PointObjective(ts, g_rober)
    ref = sn.gradient(prob, obj, method="forward", ode_method="BDF", rtol=1e-11, atol=1e-15)
    errs = []
    for rtol in (1e-5, 1e-8):
        r = sn.adjoint_gradient(
            prob, obj, kind="discrete", method="BDF", rtol=rtol, atol=rtol * 1e-4
        )
        assert r.success
        errs.append(
            max(
                np.abs((r.grad_p - ref.grad_p) / ref.grad_p).max(),
                np.abs(r.grad_y0 - ref.grad_y0).max() / np.abs(ref.grad_y0).max(),
            )
        )
    assert errs[1] < 1e-6 and errs[0] > 10 * errs[1]


def test_gradient_and_objective_choose_the_bdf_adjoint():
    prob = heat_problem(sparse=True)
    fw = sn.gradient(prob, OBJ, method="forward", ode_method="BDF", rtol=1e-9, atol=1e-11)
    r = sn.gradient(prob, OBJ, ode_method="BDF", rtol=1e-9, atol=1e-11)
    assert "backward_steps" in r.stats  # 2 N > 8 unknowns: the adjoint
    assert np.abs(r.grad_p - fw.grad_p).max() < 1e-5 * np.abs(fw.grad_p).max()
    obj = sn.Objective(prob, OBJ, method="BDF", rtol=1e-9, atol=1e-11)
    g = obj.jac(K0)
    assert obj._adjoint_ok()
    assert np.abs(g - obj.gradient_by("forward", K0)).max() < 1e-5 * np.abs(g).max()
