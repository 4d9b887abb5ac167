"""Discrete adjoints with checkpoints: the stored-steps gradient within a memory budget."""

import numpy as np
import pytest
import scipy.sparse as sp

import sensitivity as sn
import sensitivity.ode.solve as ode_solve
from sensitivity.testing import taylor_test
from tests.rhs_suite import g_heat, g_int, g_rober, heat, lotka_volterra, robertson

P_LV = np.array([1.5, 1.0, 3.0, 1.0])
TS_LV = np.array([0.0, 0.37, 2.0, 5.55, 10.0])  # at t0, between steps, at the end


def lv_problem(p=P_LV, y0=(1.0, 1.0)):
    return sn.ODEProblem(lotka_volterra, np.array(y0, float), (0.0, 10.0), p)


LV_OBJ = sn.L2Misfit(TS_LV, np.full((TS_LV.size, 2), 0.8)) + sn.IntegralObjective(
    g_int, t_span=(1.0, 7.5)
)

N = 64
X = (np.arange(N) + 0.5) / N
U0 = np.sin(np.pi * X) + 0.5 * np.sin(3 * np.pi * X)
K0 = 1 + 0.5 * np.sin(2 * np.pi * X)
SENSORS = (np.array([0.1, 0.3, 0.5, 0.7, 0.9]) * N).astype(int)
TS_HEAT = np.concatenate([[0.0], 0.005 * np.arange(1, 21)])
PATTERN = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(N, N))
HEAT_OBJ = sn.L2Misfit(
    TS_HEAT, np.full((TS_HEAT.size, SENSORS.size), 0.2), observe=SENSORS
) + sn.IntegralObjective(g_heat, t_span=(0.01, 0.07))
BDF = dict(kind="discrete", method="BDF", rtol=1e-6, atol=1e-8)


def heat_problem(k=K0):
    return sn.ODEProblem(heat, U0, (0.0, 0.1), k, jac_sparsity=PATTERN, param_sparsity=PATTERN)


def rober_problem(p=(0.04, 1e4, 3e7)):
    return sn.ODEProblem(robertson, [1.0, 0.0, 0.0], (0.0, 40.0), np.array(p))


ROBER_OBJ = sn.PointObjective(np.array([0.0, 0.4, 4.0, 13.0, 40.0]), g_rober)


def close(a, b, rtol):
    return np.abs(a - b).max() <= rtol * np.abs(b).max()


@pytest.mark.parametrize("method", ["Tsit5", "DP5"])
def test_rk_checkpointed_gradient_is_the_stored_one(method):
    prob = lv_problem()
    ref = sn.adjoint_gradient(prob, LV_OBJ, method=method)
    # a checkpoint of 2 floats is mostly object headers: the stored steps' bytes are a
    # budget that still forces checkpointing (116 steps, 168 bytes a state)
    full = ref.stats["stored_bytes"]
    for kw in (dict(checkpoints=2), dict(checkpoints=7), dict(memory_budget=full)):
        r = sn.adjoint_gradient(prob, LV_OBJ, method=method, **kw)
        assert r.success and r.stats["nsteps"] == ref.stats["nsteps"]
        # re-stepping gives the forward states bitwise: only the order of summing the
        # per-step parameter parts differs from the one-sweep kernel
        # (and the integral's nodes read an interpolant rebuilt from the same stages)
        assert close(r.grad_y0, ref.grad_y0, 1e-14) and close(r.grad_p, ref.grad_p, 1e-14)
        assert abs(r.value - ref.value) < 1e-14 * abs(ref.value)
        assert r.stats["recomputations"] > 1.0
        if "memory_budget" in kw:
            assert r.stats["peak_stored_bytes"] <= kw["memory_budget"]
        else:
            assert r.stats["snapshots"] == kw["checkpoints"]


@pytest.fixture
def fixed_steps(monkeypatch):
    """Steps of 0.02 (no rejections): the computed solution is smooth in p and y0."""
    orig = ode_solve.Solver.__init__

    def capped(self, *a, **k):
        k["max_step"] = k["first_step"] = 0.02
        orig(self, *a, **k)

    monkeypatch.setattr(ode_solve.Solver, "__init__", capped)


def test_rk_checkpointed_taylor_test(fixed_steps):
    def value(p=P_LV, y0=(1.0, 1.0)):
        return sn.adjoint_gradient(lv_problem(p, y0), LV_OBJ, memory_budget=12000).value

    r = sn.adjoint_gradient(lv_problem(), LV_OBJ, memory_budget=12000)
    assert r.stats["nreject"] == 0 and r.stats["nsteps"] >= 500
    assert r.stats["peak_stored_bytes"] <= 12000 and r.stats["recomputations"] > 1.0
    res = taylor_test(lambda p: value(p=p), P_LV, r.grad_p, eps0=1e-3)
    assert res.passed and res.min_rate > 1.95
    res = taylor_test(lambda y0: value(y0=y0), np.ones(2), r.grad_y0, eps0=1e-3)
    assert res.passed and res.min_rate > 1.95


def test_bdf_robertson_checkpointed_matches_stored_steps():
    prob = rober_problem()
    kw = dict(BDF, atol=1e-10)
    ref = sn.adjoint_gradient(prob, ROBER_OBJ, **kw)
    for lim in (dict(checkpoints=3), dict(memory_budget=ref.stats["stored_bytes"] // 5)):
        r = sn.adjoint_gradient(prob, ROBER_OBJ, **kw, **lim)
        assert r.success and r.stats["recomputations"] > 1.0
        # replayed correctors are solved to 1e-9 of the error weights, the forward's to
        # its Newton tolerance (1e-3 of them): they differ by ~1e-3 rtol relative
        assert close(r.grad_p, ref.grad_p, 1e-7) and close(r.grad_y0, ref.grad_y0, 1e-7)
        assert r.value == ref.value  # point observations come from the forward pass
        if "memory_budget" in lim:
            assert r.stats["peak_stored_bytes"] <= lim["memory_budget"]


def test_bdf_diffusion_checkpointed_matches_stored_steps():
    prob = heat_problem()
    ref = sn.adjoint_gradient(prob, HEAT_OBJ, **BDF)
    full = ref.stats["stored_bytes"]
    for budget in (full // 10, "%dB" % (full // 3)):
        r = sn.adjoint_gradient(prob, HEAT_OBJ, **BDF, memory_budget=budget)
        assert r.success and r.stats["recomputations"] > 1.0
        assert r.stats["peak_stored_bytes"] <= sn.sens.checkpoint.parse_bytes(budget)
        # a linear problem: the forward's Newton is exact too, so only round-off differs
        assert close(r.grad_p, ref.grad_p, 1e-12) and close(r.grad_y0, ref.grad_y0, 1e-12)
        assert abs(r.value - ref.value) < 1e-12 * abs(ref.value)


def test_bdf_checkpointed_taylor_test():
    def value(k):
        return sn.adjoint_gradient(heat_problem(k), HEAT_OBJ, **BDF, checkpoints=4).value

    r = sn.adjoint_gradient(heat_problem(), HEAT_OBJ, **BDF, checkpoints=4)
    res = taylor_test(value, K0, r.grad_p, eps0=1e-3)
    assert res.passed and res.min_rate > 1.9


def test_bad_checkpoint_arguments():
    prob = lv_problem()
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="checkpoints"):
            sn.adjoint_gradient(prob, LV_OBJ, checkpoints=bad)
    with pytest.raises(ValueError, match="memory_budget"):
        sn.adjoint_gradient(prob, LV_OBJ, memory_budget="lots")
    with pytest.raises(ValueError, match="memory_budget"):
        sn.adjoint_gradient(prob, LV_OBJ, memory_budget=0)
    with pytest.raises(ValueError, match=r"memory_budget = 100 bytes is too small: at the st"):
        sn.adjoint_gradient(prob, LV_OBJ, memory_budget=100)
    # room to start, but the step record outgrows it mid-solve
    with pytest.raises(ValueError, match=r"memory_budget = 700 bytes .* after \d+ steps"):
        sn.adjoint_gradient(prob, LV_OBJ, memory_budget=700)
    with pytest.raises(ValueError, match="checkpoints"):  # the continuous kind's own check
        sn.adjoint_gradient(prob, LV_OBJ, kind="continuous", checkpoints=0)


def test_online_checkpointer_shrink_keeps_a_valid_schedule():
    oc = sn.sens.checkpoint.OnlineCheckpointer(16)
    for i in range(40):
        oc.record(i, np.array([float(i)]))
        if i == 30:
            oc.shrink(5)
            assert len(oc.store) <= 5 and 0 in oc.store
    assert len(oc.store) <= 5
    sched = oc.schedule(40)
    assert sn.sens.checkpoint.validate(sched) and sched.n_snapshots <= 5
    seen = []
    sn.sens.checkpoint.run(
        sched, None, lambda a, b, x: x + (b - a), lambda k, x: seen.append(x[0]),
        checkpoints=oc.store,
    )  # fmt: skip
    assert seen == list(range(39, -1, -1))
    with pytest.raises(ValueError, match="n_snapshots"):
        oc.shrink(1)
