"""Structural operations: forward and reverse against complex step, and each other."""

import numpy as np
import pytest

import sensitivity as sn
from sensitivity.ad.dual import Dual
from sensitivity.testing import dot_product_test

A = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.3, 0.1, 2.0]])
C = np.arange(12.0).reshape(3, 4) / 7.0


def _setitem(x):
    out = np.zeros_like(x)
    out[1:] = x[:-1] * x[1:]
    out[0] = 2.0
    return out


def _add_at(x):
    out = np.zeros_like(x, shape=(3,))
    np.add.at(out, np.array([0, 1, 0, 2]), x[:4])
    return out


def _iadd(x):
    y = x * 1.0
    y += x**2
    y *= 3.0
    return y


# name -> (function of x, shape of x, analytic?)
CASES = {
    "sum": (lambda x: np.sum(x), (3, 4), True),
    "sum_axis": (lambda x: np.sum(x, axis=0), (3, 4), True),
    "sum_keepdims": (lambda x: x.sum(axis=-1, keepdims=True), (3, 4), True),
    "mean": (lambda x: np.mean(x, axis=1), (3, 4), True),
    "var": (lambda x: np.var(x), (3, 4), False),
    "std": (lambda x: np.std(x, axis=0), (3, 4), False),
    "reshape": (lambda x: np.reshape(x, (4, 3)) * C.T, (3, 4), True),
    "reshape_method": (lambda x: x.reshape(2, -1) ** 2, (3, 4), True),
    "ravel": (lambda x: np.ravel(x) * np.arange(12.0), (3, 4), True),
    "transpose": (lambda x: x.T @ A, (3, 4), True),
    "transpose_axes": (lambda x: np.transpose(x[None], (2, 0, 1)) ** 2, (3, 4), True),
    "swapaxes": (lambda x: np.swapaxes(x, 0, 1) ** 2, (3, 4), True),
    "moveaxis": (lambda x: np.moveaxis(x[None] ** 2, 0, -1), (3, 4), True),
    "squeeze": (lambda x: np.squeeze(x[:, :1]) ** 3, (3, 4), True),
    "expand_dims": (lambda x: np.expand_dims(x, 1) * C[:, None, :], (3, 4), True),
    "broadcast_to": (lambda x: np.broadcast_to(x, (2, 4)) * C[:2], (4,), True),
    "concatenate": (lambda x: np.concatenate([x, np.ones(2), x**2]), (4,), True),
    "concatenate_axis": (lambda x: np.concatenate([x, C], axis=1) ** 2, (3, 4), True),
    "stack": (lambda x: np.stack([x, 2 * x, np.ones(4)], axis=1), (4,), True),
    "hstack": (lambda x: np.hstack([x, 1.0, x**2]), (4,), True),
    "vstack": (lambda x: np.vstack([x, x**3]), (4,), True),
    "atleast_2d": (lambda x: np.atleast_2d(x) ** 2, (4,), True),
    "cumsum": (lambda x: np.cumsum(x**2), (3, 4), True),
    "cumsum_axis": (lambda x: np.cumsum(x, axis=1) * C, (3, 4), True),
    "getitem_basic": (lambda x: x[1:, ::2] ** 2, (3, 4), True),
    "getitem_ellipsis": (lambda x: x[..., 0] * x[..., -1], (3, 4), True),
    "getitem_fancy_repeats": (lambda x: x[[0, 2, 0, 1]] ** 2, (4,), True),
    "getitem_bool": (lambda x: x[np.array([True, False, True, True, False])] ** 2, (5,), True),
    "iterate": (lambda x: np.stack([xi * i for i, xi in enumerate(x)]), (3,), True),
    "flip": (lambda x: np.flip(x, 0) * C, (3, 4), True),
    "roll": (lambda x: np.roll(x, 2) * np.arange(5.0), (5,), True),
    "copy": (lambda x: np.copy(x) * x, (4,), True),
    "matmul_mv": (lambda x: A @ x, (3,), True),
    "matmul_vm": (lambda x: x @ A, (3,), True),
    "matmul_mm": (lambda x: x.reshape(3, 3) @ x.reshape(3, 3).T, (9,), True),
    "matmul_vv": (lambda x: x @ x, (3,), True),
    "matmul_batched": (lambda x: np.matmul(x.reshape(2, 2, 2), A[:2, :2]), (8,), True),
    "dot": (lambda x: np.dot(A, x) + x.dot(x), (3,), True),
    "inner": (lambda x: np.inner(x, x**2), (3,), True),
    "outer": (lambda x: np.outer(x, x[:2]), (3,), True),
    "solve_vec": (lambda x: np.linalg.solve(A + np.diag(x), x**2), (3,), True),
    "solve_mat": (lambda x: np.linalg.solve(A * x[0], np.stack([x, x**2], 1)), (3,), True),
    "inv": (lambda x: np.linalg.inv(A + np.outer(x, x)), (3,), True),
    "norm": (lambda x: np.linalg.norm(x), (5,), False),
    "diff": (lambda x: np.diff(x**2, n=2), (6,), True),
    "trace": (lambda x: np.trace(x.reshape(3, 3) ** 2), (9,), True),
    "diag_build": (lambda x: np.diag(x) @ A, (3,), True),
    "diag_take": (lambda x: np.diag(np.outer(x, x)), (3,), True),
    "max": (lambda x: np.max(x * C), (3, 4), False),
    "min_axis": (lambda x: np.min(x * C, axis=0), (3, 4), False),
    "sort": (lambda x: np.sort(x**3), (5,), False),
    "trapezoid": (lambda x: np.trapezoid(x**2, dx=0.1), (6,), True),
    "where": (lambda x: np.where(np.arange(4) > 1, x**2, np.sin(x)), (4,), True),
    "clip": (lambda x: np.clip(x, -0.3, 0.4), (6,), False),
    "setitem": (_setitem, (5,), True),
    "add_at": (_add_at, (5,), True),
    "inplace": (_iadd, (4,), True),
}


def reference_jacobian(f, x, analytic):
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = 1.0
        e = e.reshape(x.shape)
        if analytic:
            col = np.imag(f(x + 1e-30j * e)) / 1e-30
        else:
            col = (f(x + 1e-6 * e) - f(x - 1e-6 * e)) / 2e-6
        cols.append(np.reshape(col, -1))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_and_reverse_jacobians(name, rng):
    f, shape, analytic = CASES[name]
    x = rng.uniform(0.2, 1.5, shape) * rng.choice([-1, 1], shape)
    ref = reference_jacobian(f, x, analytic)
    tol = 1e-12 if analytic else 1e-7
    Jf = sn.jacobian(f, x, mode="forward", chunk=3).reshape(ref.shape)
    Jr = sn.jacobian(f, x, mode="reverse").reshape(ref.shape)
    np.testing.assert_allclose(Jf, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(Jr, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(sn.jacobian(f, x).reshape(ref.shape), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_jvp_vjp_dot_product(name, rng):
    f, shape, _ = CASES[name]
    x = rng.uniform(0.2, 1.5, shape) * rng.choice([-1, 1], shape)
    res = dot_product_test(
        lambda v: sn.jvp(f, x, v)[1], lambda w: sn.vjp(f, x, w)[1], shape_in=shape, seed=3
    )
    assert res.passed, (res.lhs, res.rhs)


def test_values_are_numpy_values(rng):
    x = rng.standard_normal((3, 4))
    for name, (f, shape, _) in CASES.items():
        xi = rng.uniform(0.2, 1.5, shape)
        y, _ = sn.jvp(f, xi, np.ones(shape))
        np.testing.assert_allclose(y, f(xi), rtol=1e-15, err_msg=name)
    assert x.shape == (3, 4)


def test_unsupported_function_names_itself():
    x = Dual(np.ones(3), np.ones((3, 1)))
    with pytest.raises(TypeError, match="numpy.einsum is not supported"):
        np.einsum("i,i->", x, x)
    with pytest.raises(TypeError, match="out= argument"):
        np.sum(x, out=np.zeros(()))


def test_conversion_to_plain_is_an_error():
    x = Dual(np.ones(3), np.ones((3, 1)))
    with pytest.raises(TypeError, match="derivative"):
        np.asarray(x) + 0
    with pytest.raises(TypeError, match="math.sin"):
        float(x[0])
    buf = np.zeros(3)
    with pytest.raises((TypeError, ValueError)):
        buf[0] = x[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_over_reverse_through_every_op(name, rng):
    """hvp runs every vjp on dual cotangents; compare with differences of gradients."""
    f, shape, _ = CASES[name]
    x = rng.uniform(0.2, 1.5, shape) * rng.choice([-1, 1], shape)

    def loss(z):
        return np.sum(f(z) ** 2)

    v = rng.standard_normal(shape)
    h = 1e-6
    ref = (sn.grad(loss, x + h * v) - sn.grad(loss, x - h * v)) / (2 * h)
    got = sn.hvp(loss, x, v)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(ref).max()))
