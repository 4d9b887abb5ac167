"""Compiled derivative kernels on the shared right-hand sides (tests/rhs_suite.py).

Every Jacobian from the compiled duals is compared with complex step (analytic
right-hand sides) or 4th-order central differences, for K in {1, 3, 4, 8, 16}
partials per sweep and every argument mix: y dual, p dual, both dual.
"""

import numpy as np
import pytest
from numba import njit

from sensitivity.ad import nb
from tests.rhs_suite import SUITE, reference_jacobians

KS = [1, 3, 4, 8, 16]


def _tol(case):
    return dict(rtol=1e-11, atol=1e-12) if case.analytic else dict(rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def compiled():
    return {c.name: nb.compile_rhs(c.f) for c in SUITE}


@pytest.fixture(scope="module")
def references():
    out = {}
    for c in SUITE:
        t, y, p = c.point()
        out[c.name] = reference_jacobians(c, t, y, p)
    return out


@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("case", SUITE, ids=lambda c: c.name)
def test_dense_jacobian_y_dual(case, K, compiled, references):
    t, y, p = case.point()
    J = np.full((case.n, case.n), np.nan)
    nb.make_kernel("jac", compiled[case.name], K)(t, y, p, J)
    np.testing.assert_allclose(J, references[case.name][0], **_tol(case))


@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("case", SUITE, ids=lambda c: c.name)
def test_dense_jacobian_p_dual(case, K, compiled, references):
    t, y, p = case.point()
    J = np.full((case.n, case.m), np.nan)
    nb.make_kernel("param_jac", compiled[case.name], K)(t, y, p, J)
    np.testing.assert_allclose(J, references[case.name][1], **_tol(case))


def _both_driver(rhs, K):
    # y and p both dual with the same K: seed y along columns 0..n-1, p along n..n+m-1.
    @njit
    def drive(t, y, p):
        n, m = len(y), len(p)
        ey = np.zeros((n, K))
        ep = np.zeros((m, K))
        for j in range(n):
            ey[j, j] = 1.0
        for j in range(m):
            ep[j, n + j] = 1.0
        out = nb.dual_array_k(np.empty(n), np.empty((n, K)), 0, K)
        rhs(t, nb.dual_array_k(y, ey, 0, K), nb.dual_array_k(p, ep, 0, K), out)
        return out.val.copy(), out.eps.copy()

    return drive


@pytest.mark.parametrize("case", SUITE, ids=lambda c: c.name)
def test_both_dual(case, compiled, references):
    t, y, p = case.point()
    K = case.n + case.m
    val, eps = _both_driver(compiled[case.name], K)(t, y, p)
    f = np.empty(case.n)
    compiled[case.name](t, y, p, f)
    np.testing.assert_allclose(val, f, rtol=1e-14, atol=1e-15)
    Jy, Jp = references[case.name]
    np.testing.assert_allclose(eps, np.hstack([Jy, Jp]), **_tol(case))


@pytest.mark.parametrize("case", SUITE, ids=lambda c: c.name)
def test_jvp_and_param_jvp(case, compiled, references):
    t, y, p = case.point()
    rng = np.random.default_rng(3)
    v, u = rng.standard_normal(case.n), rng.standard_normal(case.m)
    out = np.empty(case.n)
    nb.make_kernel("jvp", compiled[case.name], 1)(t, y, p, v, out)
    Jy, Jp = references[case.name]
    np.testing.assert_allclose(out, Jy @ v, **_tol(case))
    nb.make_kernel("param_jvp", compiled[case.name], 1)(t, y, p, u, out)
    np.testing.assert_allclose(out, Jp @ u, **_tol(case))


def test_values_on_duals_equal_floats(compiled):
    # The value part of a dual evaluation is the float evaluation, bit for bit
    # (except np.dot, which numba sends to BLAS on floats: summation order differs).
    for case in SUITE:
        if case.name == "accumulator":
            continue
        t, y, p = case.point()
        f = np.empty(case.n)
        compiled[case.name](t, y, p, f)
        val, _ = _both_driver(compiled[case.name], case.n + case.m)(t, y, p)
        assert np.array_equal(val, f), case.name


def test_kernel_callable_from_njit(compiled):
    # Integrators call prob.jac_kernel from their own compiled loops.
    case = SUITE[0]
    jac = nb.make_kernel("jac", compiled[case.name], 2)

    @njit
    def outer(t, y, p):
        J = np.empty((2, 2))
        jac(t, y, p, J)
        return J

    t, y, p = case.point()
    J = np.empty((2, 2))
    jac(t, y, p, J)
    np.testing.assert_array_equal(outer(t, y, p), J)


def test_fingerprint_changes_with_source():
    def f1(t, y, p, dydt):
        dydt[0] = y[0]

    def f2(t, y, p, dydt):
        dydt[0] = 2.0 * y[0]

    assert nb.fingerprint(f1) != nb.fingerprint(f2)
    assert nb.fingerprint(f1) == nb.fingerprint(f1)
