"""Exact Hessian-vector products of ODE objectives (second-order forward sensitivities)."""

import numpy as np
import pytest

import sensitivity as sn
from sensitivity.sens.second_order import HessianVectorSolver
from tests.rhs_suite import lotka_volterra, robertson

P0 = np.array([1.5, 1.0, 3.0, 1.0])
TS = np.linspace(0.5, 10.0, 20)


def lv_problem(compile=True):
    return sn.ODEProblem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), P0 * 0.9, compile=compile)


def lv_data():
    y = sn.solve(lv_problem(), method="Tsit5", t_eval=TS, rtol=1e-10, atol=1e-12).y
    return y * 1.05 + 0.02


def observe(t, y, p, out):  # nonlinear in y and in p
    out[0] = p[0] * y[0] * y[1]
    out[1] = np.exp(0.1 * y[1])


def point(t, y, p):
    return 0.5 * y[0] ** 2 * p[1] + np.sin(y[1])


def fd_hessp(obj, x, v, h=1e-4):
    """Central differences of the (forward-sensitivity) gradient along v."""
    return (obj.jac(x + h * v) - obj.jac(x - h * v)) / (2 * h)


def full_hessian(obj, x):
    return np.stack([obj.hessp(x, e, kind="exact") for e in np.eye(x.size)], axis=1)


X6 = np.concatenate([P0 * 1.05, [1.02, 0.97]])


@pytest.mark.parametrize(
    "make_term",
    [
        lambda: sn.L2Misfit(TS, lv_data()),
        lambda: sn.L2Misfit(TS, lv_data()[:, ::-1] * [[1.0, 2.0]], observe=observe),
        lambda: sn.PointObjective(TS, point),
        lambda: sn.L2Misfit(TS[:7], lv_data()[:7, 1], observe=1) + sn.PointObjective(TS, point),
    ],
    ids=["components", "observe-function", "point", "sum"],
)
def test_exact_hessp_against_differences_of_the_gradient(make_term):
    obj = sn.Objective(lv_problem(), make_term(), fit_y0=True, method="Tsit5", rtol=1e-11,
                       atol=1e-13)  # fmt: skip
    v = np.random.default_rng(0).standard_normal(6)
    Hv = obj.hessp(X6, v, kind="exact")
    ref = fd_hessp(obj, X6, v)
    # gradient noise ~1e-11 / h: the differences carry ~1e-7 relative error
    np.testing.assert_allclose(Hv, ref, rtol=2e-5, atol=2e-5 * np.abs(ref).max())
    gn = obj.hessp(X6, v) if obj.has_residuals else None
    if gn is not None and isinstance(obj.term, sn.L2Misfit):
        assert np.abs(Hv - gn).max() > 1e-3 * np.abs(Hv).max()  # not Gauss-Newton in disguise


def test_exact_hessian_is_symmetric_with_steps_of_the_gradient():
    # explicit RK: H v is the derivative of the computed gradient with the steps held fixed,
    # so the assembled Hessian is symmetric to round-off at a loose tolerance too
    obj = sn.Objective(lv_problem(), sn.L2Misfit(TS, lv_data()), fit_y0=True, method="Tsit5",
                       rtol=1e-5, atol=1e-7)  # fmt: skip
    H = full_hessian(obj, X6)
    assert np.abs(H - H.T).max() <= 1e-9 * np.abs(H).max()
    # and it is the Jacobian of that gradient: a Taylor test of jac along a direction
    v = np.random.default_rng(1).standard_normal(6)
    g0 = obj.jac(X6)
    errs = [np.linalg.norm(obj.jac(X6 + h * v) - g0 - h * (H @ v)) for h in (1e-3, 5e-4)]
    assert errs[1] < errs[0] / 3.0  # second order (4x), where first order would give 2x


def test_exact_hessp_with_transforms_and_compile_false():
    data = lv_data()
    a = sn.Objective(lv_problem(), sn.L2Misfit(TS, data), method="Tsit5", rtol=1e-9,
                     atol=1e-11).with_transform([sn.Log()] * 4)  # fmt: skip
    b = sn.Objective(lv_problem(compile=False), sn.L2Misfit(TS, data), method="Tsit5",
                     rtol=1e-9, atol=1e-11).with_transform([sn.Log()] * 4)  # fmt: skip
    x = np.log(P0 * 1.1)
    v = np.array([0.3, -1.0, 0.5, 0.2])
    Ha = a.hessp(x, v, kind="exact")
    np.testing.assert_allclose(b.hessp(x, v, kind="exact"), Ha, rtol=1e-10)
    np.testing.assert_allclose(Ha, fd_hessp(a, x, v, h=1e-5), rtol=1e-4)


def test_exact_hessp_through_bdf_on_robertson():
    prob = sn.ODEProblem(robertson, [1.0, 0.0, 0.0], (0.0, 40.0), [0.04, 3e7, 1e4])
    ts = np.geomspace(1e-3, 40.0, 12)
    data = sn.solve(prob, method="BDF", t_eval=ts, rtol=1e-10, atol=1e-14).y * 1.02
    term = sn.L2Misfit(ts, data[:, [0, 2]], observe=[0, 2], weights=[1.0, 1e4])
    obj = sn.Objective(prob, term, method="BDF", rtol=1e-9, atol=1e-13)
    obj = obj.with_transform([sn.Log()] * 3)
    x = np.log([0.05, 2.5e7, 1.2e4])
    v = np.array([1.0, -0.5, 0.25])
    Hv = obj.hessp(x, v, kind="exact")
    # implicit methods: accurate to the tolerance (steps follow y; corrector as for S)
    np.testing.assert_allclose(Hv, fd_hessp(obj, x, v, h=1e-4), rtol=1e-3)


def test_trust_region_newton_with_exact_hessp_reaches_the_least_squares_optimum():
    data = lv_data()
    ls = sn.fit(sn.Objective(lv_problem(), sn.L2Misfit(TS, data), method="Tsit5", rtol=1e-9,
                             atol=1e-11), P0 * 0.95, progress=False)  # fmt: skip
    obj = sn.Objective(lv_problem(), sn.L2Misfit(TS, data), method="Tsit5", rtol=1e-9, atol=1e-11)
    kinds = []
    real = obj.hessp

    def spy(x, v, kind="gauss-newton"):
        kinds.append(kind)
        return real(x, v, kind=kind)

    obj.hessp = spy
    res = sn.fit(obj, P0 * 0.95, method="trust-ncg", hessp="exact", progress=False, gtol=1e-6)
    assert res.success and kinds and set(kinds) == {"exact"}
    np.testing.assert_allclose(res.x, ls.x, rtol=1e-6)
    with pytest.raises(ValueError, match="hessp"):
        sn.fit(obj, P0, method="trust-ncg", hessp="newton", progress=False)


def test_exact_hessp_bad_input():
    integral = sn.Objective(lv_problem(), sn.IntegralObjective(lambda t, y, p: y[0] ** 2),
                            method="Tsit5")  # fmt: skip
    with pytest.raises(TypeError, match="integral"):
        integral.hessp(P0, np.ones(4), kind="exact")
    with pytest.raises(ValueError, match="explicit methods, BDF and ESDIRK"):
        HessianVectorSolver(lv_problem(), TS, np.arange(4), [], "Rodas4")
    with pytest.raises(ValueError, match="unknowns"):
        HessianVectorSolver(lv_problem(), TS, [], [], "Tsit5")
