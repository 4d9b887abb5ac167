"""ODEProblem: validation at the boundary and the contract methods."""

import numpy as np
import pytest
import scipy.sparse as sp

from sensitivity.ad.nb import RHSCompileError
from sensitivity.ode import ODEProblem
from tests.rhs_suite import CASES, SUITE, lotka_volterra, reference_jacobians

Y0 = [1.0, 2.0]
P = [1.0, 2.0, 3.0, 4.0]


@pytest.fixture(scope="module")
def lv():
    return ODEProblem(lotka_volterra, Y0, (0.0, 10.0), P)


def test_attributes(lv):
    assert lv.n == 2 and lv.m == 4
    assert lv.y0.dtype == np.float64 and lv.y0.shape == (2,)
    assert lv.p.dtype == np.float64 and lv.p.shape == (4,)
    assert lv.t_span == (0.0, 10.0) and all(isinstance(t, float) for t in lv.t_span)
    assert lv.compile is True and lv.f is lotka_volterra
    assert lv.jac_sparsity is None and lv.param_sparsity is None


def test_contract_methods_match_references(lv):
    case = CASES["lotka_volterra"]
    y, p = np.array([0.7, 1.3]), np.array([1.1, 0.4, 0.9, 0.2])
    Jy, Jp = reference_jacobians(case, 0.5, y, p)
    f = np.empty(2)
    lotka_volterra(0.5, y, p, f)
    np.testing.assert_allclose(lv.rhs(0.5, y, p=p), f, rtol=1e-15)
    np.testing.assert_allclose(lv.jacobian(0.5, y, p=p), Jy, rtol=1e-13)
    np.testing.assert_allclose(lv.param_jacobian(0.5, y, p=p), Jp, rtol=1e-13)
    v, w, u = np.array([0.3, -1.0]), np.array([2.0, 0.5]), np.arange(1.0, 5.0)
    np.testing.assert_allclose(lv.jvp(0.5, y, v, p=p), Jy @ v, rtol=1e-13)
    np.testing.assert_allclose(lv.vjp(0.5, y, w, p=p), Jy.T @ w, rtol=1e-13)
    np.testing.assert_allclose(lv.param_jvp(0.5, y, u, p=p), Jp @ u, rtol=1e-13)
    np.testing.assert_allclose(lv.param_vjp(0.5, y, w, p=p), Jp.T @ w, rtol=1e-13)
    # the default p is the problem's
    np.testing.assert_allclose(lv.jacobian(0.5, y), reference_jacobians(case, 0.5, y, lv.p)[0])


def test_dot_product_jvp_vjp(lv):
    rng = np.random.default_rng(0)
    y, v, w = rng.uniform(0.5, 2, 2), rng.standard_normal(2), rng.standard_normal(2)
    assert w @ lv.jvp(0.1, y, v) == pytest.approx(v @ lv.vjp(0.1, y, w), rel=1e-13)


def test_kernels_are_njit_callable(lv):
    J = np.empty((2, 2))
    lv.jac_kernel(0.0, lv.y0, lv.p, J)
    np.testing.assert_allclose(J, lv.jacobian(0.0, lv.y0))
    Jp = np.empty((2, 4))
    lv.param_jac_kernel(0.0, lv.y0, lv.p, Jp)
    np.testing.assert_allclose(Jp, lv.param_jacobian(0.0, lv.y0))
    out = np.empty(2)
    lv.rhs_kernel(0.0, lv.y0, lv.p, out)
    np.testing.assert_allclose(out, lv.rhs(0.0, lv.y0))


def test_backwards_t_span_and_no_parameters():
    def decay(t, y, p, dydt):
        dydt[0] = -y[0]

    prob = ODEProblem(decay, [1.0], (5.0, 0.0))
    assert prob.t_span == (5.0, 0.0) and prob.m == 0
    assert prob.param_jacobian(0.0, [1.0]).shape == (1, 0)
    np.testing.assert_array_equal(prob.jacobian(0.0, [2.0]), [[-1.0]])


def test_given_sparsity_returns_sparse():
    prob = ODEProblem(lotka_volterra, Y0, (0.0, 1.0), P, jac_sparsity=np.ones((2, 2)))
    J = prob.jacobian(0.0, prob.y0)
    assert sp.issparse(J)
    dense = ODEProblem(lotka_volterra, Y0, (0.0, 1.0), P)
    np.testing.assert_allclose(J.toarray(), dense.jacobian(0.0, dense.y0), rtol=1e-15)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(f=3), TypeError, "f must be callable"),
        (dict(y0=[[1.0, 2.0]]), ValueError, "y0 must be 1-D"),
        (dict(y0=[]), ValueError, "y0 must not be empty"),
        (dict(y0=[1.0, np.nan]), ValueError, r"y0 must be finite; y0\[1\]"),
        (dict(y0=["a", "b"]), TypeError, "y0 must be a 1-D array of real numbers"),
        (dict(p=[1.0, np.inf, 0.0, 1.0]), ValueError, r"p must be finite; p\[1\]"),
        (dict(t_span=(0.0, 0.0)), ValueError, "t0 != t1"),
        (dict(t_span=(0.0, np.inf)), ValueError, "t_span must be finite"),
        (dict(t_span=3.0), TypeError, "t_span must be a pair"),
        (dict(t_span=(1, 2, 3)), TypeError, "t_span must be a pair"),
        (dict(jac_sparsity=np.ones((3, 3))), ValueError, r"jac_sparsity must have shape \(2, 2\)"),
        (dict(param_sparsity=np.ones((2, 3))), ValueError, r"param_sparsity must have shape"),
        (dict(compile="yes"), TypeError, "compile must be True or False"),
    ],
)
def test_validation(kwargs, exc, match):
    args = dict(f=lotka_volterra, y0=Y0, t_span=(0.0, 1.0), p=P)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        ODEProblem(**args)


def test_method_argument_validation(lv):
    with pytest.raises(ValueError, match=r"y must have shape \(2,\)"):
        lv.rhs(0.0, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"p must have shape \(4,\)"):
        lv.jacobian(0.0, Y0, p=[1.0])
    with pytest.raises(ValueError, match=r"v must have shape"):
        lv.jvp(0.0, Y0, [1.0])
    with pytest.raises(ValueError, match=r"w must have shape"):
        lv.vjp(0.0, Y0, [1.0])
    with pytest.raises(TypeError, match="t must be a real number"):
        lv.rhs("0", Y0)


def nonfinite(t, y, p, dydt):
    dydt[0] = y[0]
    dydt[1] = np.log(y[1] - 2.0)


def test_nonfinite_rhs_names_component():
    with pytest.raises(ValueError, match=r"non-finite value at t = 0.0.*dydt\[1\]"):
        ODEProblem(nonfinite, Y0, (0.0, 1.0))


class _Opaque:
    pass


_OBJ = _Opaque()


def uncompilable(t, y, p, dydt):
    d = {"a": _OBJ}
    dydt[0] = len(d) * y[0]
    dydt[1] = y[1]


def test_uncompilable_rhs_names_construct_and_fallback():
    with pytest.raises(RHSCompileError, match="compile=False") as info:
        ODEProblem(uncompilable, Y0, (0.0, 1.0))
    msg = str(info.value)
    assert "uncompilable" in msg or "_Opaque" in msg or "d = " in msg
    assert "\x1b[" not in msg  # no terminal colour codes


def dual_only_failure(t, y, p, dydt):
    # float(y[0]) compiles on floats but not on duals (it would drop the derivative)
    dydt[0] = float(y[0]) * p[0]
    dydt[1] = y[1]


def test_rhs_failing_only_on_duals_is_explained():
    prob = ODEProblem(dual_only_failure, Y0, (0.0, 1.0), [1.0])
    with pytest.raises(RHSCompileError, match="compile=False") as info:
        prob.jacobian(0.0, prob.y0)
    assert "float(Dual" in str(info.value) and "dydt[0] = float(y[0]) * p[0]" in str(info.value)
    assert isinstance(RHSCompileError("x"), TypeError)


@pytest.mark.parametrize(
    "case", [c for c in SUITE if c.name != "helper_call"], ids=lambda c: c.name
)
def test_compile_false_runs_on_numpy_duals(case):
    t, y, p = case.point()
    prob = ODEProblem(case.f, y, (0.0, 1.0), p, compile=False)
    assert prob.compile is False
    Jy, Jp = reference_jacobians(case, t, y, p)
    tol = dict(rtol=1e-11, atol=1e-12) if case.analytic else dict(rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(prob.jacobian(t, y), Jy, **tol)
    np.testing.assert_allclose(prob.param_jacobian(t, y), Jp, **tol)
    v = np.linspace(-1.0, 1.0, case.n)
    np.testing.assert_allclose(prob.jvp(t, y, v), Jy @ v, **tol)


def test_compile_false_with_njit_helper_explains():
    case = CASES["helper_call"]
    t, y, p = case.point()
    prob = ODEProblem(case.f, y, (0.0, 1.0), p, compile=False)
    with pytest.raises(TypeError, match="NUMBA_DISABLE_JIT"):
        prob.jacobian(t, y)


def test_compiled_equals_numpy_level_duals():
    # The same Jacobians from the compiled duals and from the numpy-level duals.
    for case in SUITE:
        if case.name == "helper_call":
            continue
        t, y, p = case.point()
        a = ODEProblem(case.f, y, (0.0, 1.0), p)
        b = ODEProblem(case.f, y, (0.0, 1.0), p, compile=False)
        np.testing.assert_allclose(a.jacobian(t, y), b.jacobian(t, y), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(
            a.param_jacobian(t, y), b.param_jacobian(t, y), rtol=1e-13, atol=1e-14
        )


def float_scratch(t, y, p, dydt):
    tmp = np.empty(len(y))
    for i in range(len(y)):
        tmp[i] = y[i] * p[0]
    dydt[0] = tmp[0]
    dydt[1] = tmp[1]


def test_float_scratch_array_error_points_to_similar():
    prob = ODEProblem(float_scratch, Y0, (0.0, 1.0), [1.0])
    with pytest.raises(RHSCompileError, match=r"similar\(y\)") as info:
        prob.jacobian(0.0, prob.y0)
    assert "tmp[i] = y[i] * p[0]" in str(info.value)
