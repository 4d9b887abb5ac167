"""The derivative operators: Hessians, nesting, NaN-safety, debug mode, bad input."""

import gc
import weakref

import numpy as np
import pytest
from scipy.optimize import rosen, rosen_der, rosen_hess, rosen_hess_prod

import sensitivity as sn


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@pytest.fixture
def x5(rng):
    return rng.uniform(-1.5, 1.5, 5)


def test_rosenbrock_gradient_hessian_hvp(x5, rng):
    assert rosenbrock(x5) == pytest.approx(rosen(x5), rel=1e-15)
    np.testing.assert_allclose(sn.grad(rosenbrock, x5), rosen_der(x5), rtol=1e-13)
    np.testing.assert_allclose(sn.hessian(rosenbrock, x5), rosen_hess(x5), rtol=1e-13, atol=1e-12)
    v = rng.standard_normal(5)
    np.testing.assert_allclose(sn.hvp(rosenbrock, x5, v), rosen_hess_prod(x5, v), rtol=1e-12)


def test_nested_derivatives_do_not_confuse_perturbations():
    # d/dx [ x * d/dy (x + y) |_{y=1} ] at x = 1 is 1; perturbation confusion gives 2.
    inner = lambda x: sn.derivative(lambda y: x + y, 1.0)  # noqa: E731
    assert sn.derivative(lambda x: x * inner(x), 1.0) == 1.0
    # the same through the tape (reverse over forward)
    assert sn.grad(lambda x: x * inner(x), 1.0) == 1.0


def test_second_derivative_by_nesting_forward():
    f = lambda x: np.sin(x) * x**2  # noqa: E731
    d2 = sn.derivative(lambda x: sn.derivative(f, x), 0.7)
    exact = -np.sin(0.7) * 0.49 + 4 * 0.7 * np.cos(0.7) + 2 * np.sin(0.7)
    assert d2 == pytest.approx(exact, rel=1e-14)


def test_sqrt_of_square_is_zero_at_zero_in_every_mode():
    f = lambda x: np.sqrt(x**2)  # noqa: E731
    assert sn.derivative(f, 0.0) == 0.0
    assert sn.grad(f, 0.0) == 0.0
    assert sn.derivative(lambda x: np.sqrt(x * x), 0.0) == 0.0
    np.testing.assert_array_equal(
        sn.hessian(lambda x: np.sum(np.sqrt(x**2)), np.zeros(2)), np.zeros((2, 2))
    )
    # a real singularity is not hidden: d/dx sqrt(x) at 0 is inf
    assert np.isinf(sn.derivative(np.sqrt, 0.0))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_debug_nans_names_the_primitive():
    with sn.debug_nans():
        with pytest.raises(sn.NonFiniteError, match="'log'.*value"):
            sn.grad(lambda x: np.sum(np.log(x)), np.array([1.0, 0.0]))
        with pytest.raises(sn.NonFiniteError, match="'sqrt'.*derivative"):
            sn.derivative(np.sqrt, 0.0)
        with pytest.raises(sn.NonFiniteError, match="'arcsin'.*adjoint"):
            sn.grad(lambda x: np.arcsin(x), 1.0)
        assert sn.grad(lambda x: np.sum(np.exp(x)), np.zeros(2)).tolist() == [1.0, 1.0]
    # outside the context the same calls do not raise
    assert np.isinf(sn.derivative(np.sqrt, 0.0))


def test_jacobian_modes_agree_and_auto_picks(rng):
    x = rng.standard_normal(4)
    wide = lambda x: np.outer(np.sin(x), x).ravel()  # noqa: E731  (16 outputs)
    tall = lambda x: np.sum(np.exp(x) * x)  # noqa: E731
    for f in (wide, tall):
        Jf = sn.jacobian(f, x, mode="forward", chunk=1)
        np.testing.assert_allclose(sn.jacobian(f, x, mode="reverse"), Jf, rtol=1e-14)
        np.testing.assert_allclose(sn.jacobian(f, x, chunk=3), Jf, rtol=1e-14)
        np.testing.assert_allclose(sn.jacobian(f, x), Jf, rtol=1e-14)


def test_jacobian_shapes():
    x = np.ones((2, 3))
    J = sn.jacobian(lambda x: x.T * 2.0, x)
    assert J.shape == (3, 2, 2, 3)
    assert J[2, 1, 1, 2] == 2.0 and J[2, 1, 1, 1] == 0.0


def test_constant_functions_give_zero_derivatives():
    x = np.array([1.0, 2.0])
    assert sn.grad(lambda x: 3.0, x).tolist() == [0.0, 0.0]
    assert sn.jacobian(lambda x: np.ones(3), x).shape == (3, 2)
    assert sn.derivative(lambda x: np.ones(2), 0.5).tolist() == [0.0, 0.0]
    assert sn.vjp(lambda x: np.ones(3), x, np.ones(3))[1].tolist() == [0.0, 0.0]


def test_tape_releases_memory_after_the_sweep():
    big = np.ones(10_000)
    ref = {}

    def f(x):
        y = np.exp(x * big)
        ref["y"] = weakref.ref(y.value)  # the intermediate the tape holds
        return np.sum(y)

    g = sn.grad(f, 0.5)
    gc.collect()
    assert ref["y"]() is None
    assert g == pytest.approx(np.exp(0.5) * 1e4, rel=1e-12)


def test_tape_can_be_swept_twice_then_cleared():
    tape = sn.Tape()
    x = tape.leaf(np.array([1.0, 2.0]))
    y = np.sin(x) * 2.0
    g1 = tape.backward(y, np.array([1.0, 0.0]), [x])[0]
    g2 = tape.backward(y, np.array([0.0, 1.0]), [x])[0]
    np.testing.assert_allclose(g1 + g2, 2 * np.cos([1.0, 2.0]))
    tape.clear()
    assert tape.nodes == []


def test_similar_makes_scratch_arrays_that_hold_duals():
    def f(x):
        scratch = sn.similar(x)
        for i in range(len(x)):
            scratch[i] = x[i] * x[i - 1]
        return scratch

    x = np.array([1.0, 2.0, 3.0])
    J = sn.jacobian(f, x)
    np.testing.assert_allclose(J, [[3, 0, 1], [2, 1, 0], [0, 3, 2]])
    assert isinstance(sn.similar(np.ones(2)), np.ndarray)


@pytest.mark.parametrize(
    "call",
    [
        lambda: sn.grad(lambda x: x, "abc"),
        lambda: sn.jacobian(lambda x: x, [object()]),
        lambda: sn.derivative(lambda x: x, None),
    ],
)
def test_non_numeric_x_is_a_type_error_naming_x(call):
    with pytest.raises(TypeError, match="x must be"):
        call()


def test_shape_mismatch_of_v_and_w_names_them():
    f = lambda x: x[:2] * 2.0  # noqa: E731
    with pytest.raises(ValueError, match="v must have the shape of x"):
        sn.jvp(f, np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match=r"w must have the shape of f\(x\)"):
        sn.vjp(f, np.ones(3), np.ones(3))


def test_function_returning_a_non_array_is_named():
    with pytest.raises(TypeError, match="f must return a numpy array or a number, got list"):
        sn.jacobian(lambda x: [x, x], np.ones(2))
    with pytest.raises(TypeError, match="f must return .* got NoneType"):
        sn.grad(lambda x: None, 1.0)
    with pytest.raises(TypeError, match="f must be callable"):
        sn.grad(3.0, 1.0)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="grad: f must return a scalar"):
        sn.grad(lambda x: x * 2, np.ones(3))
    with pytest.raises(ValueError, match="mode must be one of"):
        sn.jacobian(np.sin, np.ones(2), mode="sideways")
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        sn.jacobian(np.sin, np.ones(2), chunk=0)
    with pytest.raises(ValueError, match="derivative: x must be a scalar"):
        sn.derivative(np.sin, np.ones(2))


LAZY_IMPORTS = """
import sys
import numpy as np
import sensitivity as sn
heavy = [m for m in ("scipy.special", "scipy.sparse", "scipy.optimize", "sensitivity.sens")
         if m in sys.modules]
assert not heavy, heavy
from scipy import special
x = np.array([0.3, -0.7])
value, J = sn.value_and_jacobian(lambda v: special.erf(v) + special.erfc(2 * v), x)
d = 2 / np.sqrt(np.pi) * (np.exp(-x**2) - 2 * np.exp(-4 * x**2))
assert np.allclose(np.diag(J), d, rtol=1e-14, atol=0), (J, d)
assert sn.gradient.__module__ == "sensitivity.sens.adjoint"
print("ok")
"""


def test_import_defers_scipy_and_the_sensitivity_layer_until_used():
    # A fresh process: scipy.special, scipy.sparse and the adjoint layer load on first use
    # (first-call latency), and scipy.special's erf still differentiates once imported.
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", LAZY_IMPORTS], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
