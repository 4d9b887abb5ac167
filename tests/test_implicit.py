"""Stiff methods (BDF, ESDIRK = TR-BDF2, Rodas4): order, tolerance proportionality, dense and
sparse linear algebra, Newton and Jacobian policy."""

import numpy as np
import pytest
import scipy.linalg

from sensitivity.ode import linsolve
from sensitivity.ode.bdf import BDF
from sensitivity.ode.solve import solve
from tests.problems import (
    diffusion_problem,
    linear,
    linear_jac,
    make_problem,
    rober,
    rober_jac,
)

A = np.array([[-0.5, 2.0, 0.0], [-2.0, -0.5, 0.3], [0.1, 0.0, -1.0]])
Y0 = np.array([1.0, 0.5, -0.2])


def linear_problem(t_end=2.0, compile=True):
    return make_problem(linear, Y0, (0.0, t_end), A.ravel(), linear_jac, compile=compile)


@pytest.mark.parametrize("order", [1, 2])
def test_fixed_order_convergence_against_expm(order):
    # Fixed steps (huge tolerances, max_step = first_step) at a fixed order. Orders above 2
    # cannot be observed this way: the self-starting order ramp leaves an O(h^2) error.
    exact = scipy.linalg.expm(2.0 * A) @ Y0
    hs = np.array([0.02, 0.01, 0.005, 0.0025])
    errs = []
    for h in hs:
        sol = solve(
            linear_problem(),
            BDF(max_order=order, min_order=order),
            rtol=1e10,
            atol=1e10,
            first_step=h,
            max_step=h,
        )
        assert sol.success
        errs.append(np.abs(sol.y[-1] - exact).max())
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.3


def test_tolerance_proportionality():
    """Variable order 1-5: the global error scales like the tolerance."""
    exact = scipy.linalg.expm(2.0 * A) @ Y0
    tols = np.array([1e-5, 1e-7, 1e-9])
    errs = [
        np.abs(solve(linear_problem(), "BDF", rtol=r, atol=r).y[-1] - exact).max() for r in tols
    ]
    slope = np.polyfit(np.log(tols), np.log(errs), 1)[0]
    assert 0.7 < slope < 1.3
    assert all(e < 100 * r for e, r in zip(errs, tols))


def test_dense_lu_matches_numpy():
    rng = np.random.default_rng(0)
    J = rng.standard_normal((6, 6))
    M = np.empty((6, 6))
    piv = np.zeros(6, np.int64)
    linsolve.factor(J, 0.7, M, piv)
    b = rng.standard_normal(6)
    x = np.empty(6)
    linsolve.solve_lu(M, piv, b, x)
    np.testing.assert_allclose(x, np.linalg.solve(np.eye(6) - 0.7 * J, b), rtol=1e-12)


@pytest.mark.usefixtures("patterned_lu")
def test_sparse_and_dense_paths_agree():
    prob, exact = diffusion_problem(64, 0.1)
    sparse = solve(prob, "BDF", t_eval=[0.05, 0.1], rtol=1e-6, atol=1e-9)
    prob.jac_sparsity = None
    dense = solve(prob, "BDF", t_eval=[0.05, 0.1], rtol=1e-6, atol=1e-9)
    assert sparse.success and dense.success
    assert sparse.stats == dense.stats
    np.testing.assert_allclose(sparse.y, dense.y, rtol=1e-10, atol=1e-14)
    assert np.abs(sparse.y[-1] - exact).max() < 1e-5


def test_jacobian_reuse_and_refactorisation_counts():
    prob = make_problem(rober, [1.0, 0.0, 0.0], (0.0, 4e10), [0.04, 1e4, 3e7], rober_jac)
    sol = solve(prob, "BDF", rtol=1e-4, atol=[1e-8, 1e-14, 1e-6])
    s = sol.stats
    assert sol.success
    # J is reused across many steps; LU is redone only on step/order changes
    assert s["njev"] < s["nlu"] < s["nsteps"]
    assert s["njev"] < s["nsteps"] / 10


def test_backward_and_compile_false():
    exact = scipy.linalg.expm(-1.0 * A) @ Y0
    for compile in (True, False):
        prob = make_problem(linear, Y0, (0.0, -1.0), A.ravel(), linear_jac, compile=compile)
        sol = solve(prob, "BDF", rtol=1e-8, atol=1e-10)
        assert sol.success
        np.testing.assert_allclose(sol.y[-1], exact, rtol=1e-6)


def test_esdirk_convergence_order_against_expm():
    exact = scipy.linalg.expm(2.0 * A) @ Y0
    hs = np.array([0.04, 0.02, 0.01, 0.005])
    errs = []
    for h in hs:
        sol = solve(linear_problem(), "ESDIRK", rtol=1e10, atol=1e10, first_step=h, max_step=h)
        assert sol.success and sol.stats["njev"] == 1
        errs.append(np.abs(sol.y[-1] - exact).max())
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - 2.0) < 0.3


def test_esdirk_tolerance_proportionality_and_dense_output():
    exact = scipy.linalg.expm(2.0 * A) @ Y0
    tols = np.array([1e-4, 1e-6, 1e-8])
    errs = [
        np.abs(solve(linear_problem(), "ESDIRK", rtol=r, atol=r).y[-1] - exact).max() for r in tols
    ]
    slope = np.polyfit(np.log(tols), np.log(errs), 1)[0]
    assert 0.5 < slope < 0.9  # error per step of an order-2 pair: tol^(2/3)
    t_eval = np.array([0.3, 1.1, 1.9])
    sol = solve(linear_problem(), "ESDIRK", rtol=1e-8, atol=1e-8, t_eval=t_eval)
    ref = np.array([scipy.linalg.expm(t * A) @ Y0 for t in t_eval])
    assert np.abs(sol.y - ref).max() < 1e-5


@pytest.mark.usefixtures("patterned_lu")
def test_banded_and_sparse_lu_give_the_same_solution():
    """A narrow pattern takes the compiled banded LU, a wide one splu: same answer."""
    prob, exact = diffusion_problem(64, 0.1)
    assert linsolve.choose(prob.jac_sparsity) is linsolve.BANDED
    banded = solve(prob, "BDF", t_eval=[0.1], rtol=1e-6, atol=1e-9)
    wide = prob.jac_sparsity.tolil()
    wide[0, 63] = 1.0  # a far entry (value 0 in the Jacobian) forces the splu path
    prob.jac_sparsity = wide.tocsr()
    assert linsolve.choose(prob.jac_sparsity) is linsolve.SPARSE
    general = solve(prob, "BDF", t_eval=[0.1], rtol=1e-6, atol=1e-9)
    assert banded.stats == general.stats
    np.testing.assert_allclose(banded.y, general.y, rtol=1e-10, atol=1e-14)


def test_rodas4_convergence_order_and_dense_output():
    exact = scipy.linalg.expm(2.0 * A) @ Y0
    inner = scipy.linalg.expm(0.37 * A) @ Y0
    hs = np.array([0.2, 0.1, 0.05, 0.025])
    errs, dense_errs = [], []
    for h in hs:
        sol = solve(linear_problem(), "Rodas4", [0.37, 2.0], 1e10, 1e10, first_step=h, max_step=h)
        assert sol.success and sol.stats["njev"] == sol.stats["nsteps"]  # J at every step
        errs.append(np.abs(sol.y[-1] - exact).max())
        dense_errs.append(np.abs(sol.y[0] - inner).max())
    assert abs(np.polyfit(np.log(hs), np.log(errs), 1)[0] - 4.0) < 0.3
    assert np.polyfit(np.log(hs), np.log(dense_errs), 1)[0] > 3.7  # continuous extension


@pytest.mark.parametrize("method", ["ESDIRK", "Rodas4"])
@pytest.mark.usefixtures("patterned_lu")
def test_one_step_stiff_sparse_and_dense_paths_agree(method):
    prob, exact = diffusion_problem(64, 0.1)
    sparse = solve(prob, method, t_eval=[0.05, 0.1], rtol=1e-6, atol=1e-9)
    prob.jac_sparsity = None
    dense = solve(prob, method, t_eval=[0.05, 0.1], rtol=1e-6, atol=1e-9)
    assert sparse.success and dense.success and sparse.stats == dense.stats
    np.testing.assert_allclose(sparse.y, dense.y, rtol=1e-10, atol=1e-14)
    assert np.abs(sparse.y[-1] - exact).max() < 1e-4
