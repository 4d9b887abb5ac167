"""Tableau invariants, the error estimate on y' = y, and the interpolants' order."""

import dataclasses

import numpy as np
import pytest

from sensitivity.ode.tableaus import DP5, TABLEAUS, TSIT5, ButcherTableau


def one_step(tab, h, lam=1.0):
    """One step of y' = lam y from y = 1: (y_new, error estimate, stages K)."""
    s = tab.n_stages
    K = np.zeros(s)
    for i in range(s):
        K[i] = lam * (1.0 + h * tab.a[i, :i] @ K[:i])
    return 1.0 + h * tab.b @ K, h * tab.e @ K, K


@pytest.mark.parametrize("name", sorted(TABLEAUS))
def test_invariants(name):
    tab = TABLEAUS[name]
    assert np.allclose(tab.a.sum(axis=1), tab.c, atol=1e-14)
    assert tab.b.sum() == pytest.approx(1.0, abs=1e-14)
    assert tab.e.sum() == pytest.approx(0.0, abs=1e-14)
    b_all = np.r_[tab.b, np.zeros(tab.n_dense_stages)]
    assert np.allclose(tab.P.sum(axis=1), b_all, atol=1e-13)
    assert tab.explicit and not tab.a.flags.writeable
    if name == "DP8":  # 12 stages, f(t_new, y_new) and 3 stages for the dense output
        assert (tab.n_stages, tab.n_dense_stages) == (12, 4)
        assert tab.reuse_dense_stage and not tab.fsal
        assert tab.e3.sum() == pytest.approx(0.0, abs=1e-14)
    else:
        assert tab.fsal and tab.n_stages == 7 and tab.n_dense_stages == 0


@pytest.mark.parametrize(
    "field, value", [("c", np.r_[DP5.c[:-1], 0.9]), ("b", DP5.b * 1.01), ("e", DP5.e + 1e-3)]
)
def test_invariant_violations_raise(field, value):
    kwargs = {f.name: getattr(DP5, f.name) for f in dataclasses.fields(DP5) if f.init}
    kwargs[field] = value
    with pytest.raises(AssertionError):
        ButcherTableau(**kwargs)


def test_fsal_is_derived():
    kwargs = {f.name: getattr(DP5, f.name) for f in dataclasses.fields(DP5) if f.init}
    a = DP5.a.copy()
    a[-1, 0] += 1e-3
    a[-1, 1] -= 1e-3  # row sum unchanged, last row no longer equals b
    kwargs["a"] = a
    assert not ButcherTableau(**kwargs).fsal


@pytest.mark.parametrize("tab", [DP5, TSIT5], ids=lambda t: t.name)
def test_order_and_error_estimate_on_exponential(tab):
    # y' = -y: for y' = +y Tsit5's small principal error cancels against the next term
    hs = np.array([0.4, 0.2, 0.1])
    errs, ests = [], []
    for h in hs:
        y, est, _ = one_step(tab, h, -1.0)
        errs.append(abs(y - np.exp(-h)))
        ests.append(abs(est))
    # local error O(h^6) of the 5th-order solution, estimate O(h^5) bounds it
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert slope > tab.order + 1 - 0.3  # Tsit5 minimises the h^6 term: pre-asymptotic > 6
    assert all(e <= s for e, s in zip(errs, ests))


@pytest.mark.parametrize("tab", [DP5, TSIT5], ids=lambda t: t.name)
def test_interpolant_order(tab):
    hs = np.array([0.2, 0.1, 0.05])
    errs = []
    for h in hs:
        _, _, K = one_step(tab, h, -1.0)
        theta = 0.37
        b_theta = tab.P @ theta ** np.arange(1, tab.P.shape[1] + 1)
        errs.append(abs(1.0 + h * b_theta @ K - np.exp(-theta * h)))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - 5.0) < 0.3  # a 4th-order continuous extension: local error O(h^5)
