"""The verification helpers must catch wrong derivatives, not only pass right ones."""

import warnings

import numpy as np
import pytest

import sensitivity as sn
from sensitivity.testing import check_derivative, dot_product_test, taylor_test


def f(x):
    return np.sum(np.exp(np.sin(x)) * x**2)


def true_grad(x):
    return np.exp(np.sin(x)) * (np.cos(x) * x**2 + 2 * x)


X = np.array([0.3, -1.2, 0.8])


def test_taylor_rates_two_for_the_right_gradient():
    res = taylor_test(f, X, true_grad(X))
    assert res.passed and res.min_rate > 1.9
    assert np.all(np.abs(res.rates[np.isfinite(res.rates)] - 2) < 0.1)


def test_taylor_rates_one_for_a_wrong_gradient():
    wrong = true_grad(X) * (1 + 1e-3)
    res = taylor_test(f, X, wrong)
    assert not res.passed
    assert res.rates[-1] < 1.2  # the first-order error dominates as eps shrinks


def test_taylor_default_gradient_and_vector_functions():
    assert taylor_test(f, X).passed
    g = lambda x: np.sin(x) * x[0]  # noqa: E731
    assert taylor_test(g, X).passed
    assert not taylor_test(g, X, jvp=lambda x, d: np.cos(x) * d * x[0]).passed


def test_taylor_warns_at_the_round_off_floor():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        taylor_test(lambda x: np.sum(3.0 * x), X, 3.0 * np.ones(3))  # linear: remainder 0
    assert any("round-off" in str(w.message) for w in caught)


def test_dot_product_test_catches_a_wrong_transpose(rng):
    A = rng.standard_normal((4, 3))
    assert dot_product_test(lambda v: A @ v, lambda w: A.T @ w, shape_in=3).passed
    B = A.copy()
    B[0, 0] += 1e-6
    assert not dot_product_test(lambda v: A @ v, lambda w: B.T @ w, shape_in=3).passed
    with pytest.raises(ValueError, match="expected the shape of v"):
        dot_product_test(lambda v: A @ v, lambda w: A @ w[:3], shape_in=3)
    with pytest.raises(ValueError, match="give v or shape_in"):
        dot_product_test(lambda v: A @ v, lambda w: A.T @ w)


def test_check_derivative_methods_and_failures():
    g = lambda x: np.sin(x) * x[0]  # noqa: E731
    ok = check_derivative(g, X)
    assert ok.method == "complex-step" and ok.passed and ok.max_error < 1e-13
    fd = check_derivative(g, X, method="fd")
    assert fd.method == "central-difference" and fd.passed and fd.max_error < 1e-8
    bad = check_derivative(g, X, sn.jacobian(g, X) * 1.001)
    assert not bad.passed
    # abs is not analytic: auto falls back to differences (np.abs of complex is real)
    assert check_derivative(lambda x: np.abs(x) * x, X).method == "central-difference"


def test_verify_gradient_reports(capsys):
    report = sn.verify_gradient(f, X)
    out = capsys.readouterr().out
    assert report.passed and "PASSED" in out and "Taylor" in out
    bad = sn.verify_gradient(f, X, grad=true_grad(X) + 1e-4, verbose=False)
    assert not bad.passed and "FAILED" in str(bad)
    assert capsys.readouterr().out == ""
