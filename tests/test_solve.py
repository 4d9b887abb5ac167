"""solve(): validation, failure messages, method="auto", reference problems, work budgets."""

import numba
import numpy as np
import pytest

from sensitivity.ode.solve import METHODS, Events, Solver, choose_method, solve
from tests.problems import (
    REFERENCES,
    diffusion_problem,
    lotka_volterra,
    lotka_volterra_jac,
    make_problem,
    rober,
    rober_jac,
)


def lv(t_span=(0.0, 10.0), y0=(1.0, 1.0), p=(1.5, 1.0, 3.0, 1.0)):
    return make_problem(lotka_volterra, y0, t_span, p, lotka_volterra_jac)


@numba.njit(cache=True)
def nan_after_one(t, y, p, dydt):
    dydt[0] = -y[0]
    dydt[1] = np.nan if t > 1.0 else -y[1]


@numba.njit(cache=True)
def nan_after_one_jac(t, y, p, J):
    J[0, 0], J[0, 1], J[1, 0], J[1, 1] = -1.0, 0.0, 0.0, -1.0


@numba.njit(cache=True)
def nan_at_start(t, y, p, dydt):
    dydt[0] = np.log(y[0] - 1.0)
    dydt[1] = 0.0


@numba.njit(cache=True)
def raises(t, y, p, dydt):
    if y[0] > 0.0:
        raise ValueError("negative concentration")
    dydt[:] = 0.0


@numba.njit(cache=True)
def blow_up(t, y, p, dydt):
    dydt[0] = y[0] * y[0]


@numba.njit(cache=True)
def blow_up_jac(t, y, p, J):
    J[0, 0] = 2.0 * y[0]


# --- validation (DESIGN.md section 6) -----------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rtol": 0.0}, "rtol"),
        ({"rtol": -1e-3}, "rtol"),
        ({"atol": 0.0}, "atol"),
        ({"atol": [1e-8, 1e-8, 1e-8]}, "atol"),
        ({"t_eval": [0.0, 11.0]}, "t_eval"),
        ({"t_eval": [2.0, 1.0]}, "t_eval"),
        ({"t_eval": [[1.0]]}, "t_eval"),
        ({"t_eval": [1.0, np.nan, 2.0]}, "t_eval must be sorted"),
        ({"t_eval": [1.0, 2.0, 2.0, 1.5]}, "t_eval must be sorted"),
        ({"t_eval": [-1.0, 2.0]}, "t_eval must lie within"),
        ({"method": "RK4"}, "method"),
        ({"first_step": -0.1}, "first_step"),
        ({"max_step": 0.0}, "max_step"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_steps": 1.5}, "max_steps"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve(lv(), **kwargs)


@pytest.mark.parametrize(
    "prob, match",
    [
        (lv(y0=(1.0, np.nan)), "y0"),
        (lv(p=(1.5, np.inf, 3.0, 1.0)), "p"),
        (lv(t_span=(1.0, 1.0)), "t_span"),
    ],
)
def test_bad_problem_attributes(prob, match):
    with pytest.raises(ValueError, match=match):
        solve(prob)


def test_t_eval_order_follows_a_backward_t_span():
    prob = lv(t_span=(10.0, 0.0))
    sol = solve(prob, "Tsit5", t_eval=[10.0, 5.0, 5.0, 0.0])
    assert sol.success and np.array_equal(sol.t, [10.0, 5.0, 5.0, 0.0])
    with pytest.raises(ValueError, match="t_eval must be sorted"):
        solve(prob, "Tsit5", t_eval=[0.0, 5.0])


def test_not_a_problem_and_bad_events():
    with pytest.raises(TypeError, match="prob"):
        solve(object())
    with pytest.raises(TypeError, match="events"):
        solve(lv(), events=lambda t, y: y[0])
    with pytest.raises(ValueError, match="events.n"):
        Events(nan_at_start, n=0)


def test_start_check_is_redone_when_p_or_y0_change_in_place():
    # solve() remembers the last start point that passed per compiled rhs; a changed p
    # (here made in place, so the arrays are the same objects) must be checked again
    prob = lv()
    assert solve(prob, "Tsit5").success
    prob.p[0] = np.nan
    with pytest.raises(ValueError, match="prob.p must be a finite"):
        solve(prob, "Tsit5")
    prob.p[0] = 1.5
    prob.y0[0] = np.inf
    with pytest.raises(ValueError, match="prob.y0 must be finite"):
        solve(prob, "Tsit5")
    prob.y0[0] = 2.0
    prob.p[0] = 1e308  # finite, but f = p0 y0 - ... overflows to inf at the start
    with pytest.raises(ValueError, match="non-finite value at t = 0"):
        solve(prob, "Tsit5")


def test_remembered_settings_do_not_hide_errors_or_changes():
    # solve() reuses the arrays it built for a t_span, tolerances and step options it has
    # validated before; values that compare equal but are invalid must still be refused,
    # and a changed t_span or tolerance must take effect
    prob = lv()
    ref = solve(prob, "Tsit5", max_steps=1000, rtol=1e-6, atol=1e-8)
    assert ref.success
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        solve(prob, "Tsit5", max_steps=1000.0)  # == 1000, but not an integer
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        solve(prob, "Tsit5", max_steps=True)  # == 1
    sol = solve(prob, "Tsit5", max_steps=1, rtol=1e-6, atol=1e-8)
    assert not sol.success and "max_steps = 1 reached" in sol.message
    loose = solve(prob, "Tsit5", rtol=1e-3, atol=1e-8)
    assert loose.stats["nsteps"] < ref.stats["nsteps"]
    prob.t_span = (0.0, 5.0)
    short = solve(prob, "Tsit5", rtol=1e-6, atol=1e-8)
    assert short.t[-1] == 5.0 and ref.t[-1] == 10.0
    prob.t_span = (0.0, float("nan"))
    with pytest.raises(ValueError, match="prob.t_span must be two distinct finite times"):
        solve(prob, "Tsit5")


@pytest.mark.parametrize("method", ["Tsit5", "DP8", "BDF", "ESDIRK", "Rodas4"])
@pytest.mark.parametrize("case", [dict(y0=(1e308, 1.0)), dict(p=(1e300, 1.0, 1.0, 1.0))])
@pytest.mark.parametrize("compile", [True, False])
def test_overflowing_scaled_slope_fails_cleanly(method, case, compile):
    # f is finite at the start but |f| / (atol + rtol |y|) overflows: the starting step is 0.
    # This once escaped as a ZeroDivisionError, or (a zero step at t = 0 being retried for
    # ever) hung ESDIRK and Rodas4.
    kw = dict(y0=(1.0, 1.0), p=(1.5, 1.0, 3.0, 1.0)) | case
    prob = make_problem(
        lotka_volterra, kw["y0"], (0.0, 10.0), kw["p"], lotka_volterra_jac, compile=compile
    )
    sol = solve(prob, method, max_steps=500)
    assert not sol.success and sol.status < 0 and "at t = 0" in sol.message


def test_stats_are_python_ints():
    sol = solve(lv(), "Tsit5", t_eval=[5.0, 10.0])
    assert all(type(v) is int for v in sol.stats.values()) and sol.stats["nsteps"] > 10


def test_rhs_nonfinite_at_start_and_raising():
    with pytest.raises(ValueError, match=r"non-finite value at t = 0 in component 0"):
        solve(make_problem(nan_at_start, [1.0, 1.0], (0, 1), [0.0]))
    with pytest.raises(ValueError, match="raised at t = 0.*negative concentration"):
        solve(make_problem(raises, [1.0, 1.0], (0, 1), [0.0]))


@pytest.mark.parametrize("method", ["Tsit5", "DP5", "DP8", "BDF", "ESDIRK", "Rodas4"])
def test_rhs_nan_during_integration_names_t_and_component(method):
    prob = make_problem(nan_after_one, [1.0, 1.0], (0.0, 2.0), [0.0], nan_after_one_jac)
    sol = solve(prob, method, t_eval=[0.5, 2.0])
    assert not sol.success and sol.status == -3
    assert "non-finite" in sol.message and "component 1" in sol.message
    t_bad = float(sol.message.split("t = ")[1].split(" ")[0])
    assert 1.0 < t_bad < 1.5
    assert sol.t.tolist() == [0.5]  # what was computed, flagged as a failure


def test_max_steps_reached():
    sol = solve(lv(), "Tsit5", max_steps=10)
    assert not sol.success and sol.status == -2
    assert "max_steps = 10 reached at t = " in sol.message
    assert sol.stats["nsteps"] == 10


@pytest.mark.parametrize("method", ["Tsit5", "DP8", "BDF", "ESDIRK", "Rodas4"])
def test_step_size_underflow_at_a_singularity(method):
    prob = make_problem(blow_up, [1.0], (0.0, 2.0), [0.0], blow_up_jac)  # y = 1/(1-t)
    sol = solve(prob, method)
    assert not sol.success and sol.status < 0
    t_fail = float(sol.message.split("t = ")[1].split(" ")[0].rstrip(":.,"))
    assert abs(t_fail - 1.0) < 1e-3


@pytest.mark.skipif(
    numba.config.DISABLE_JIT, reason="nothing is compiled under NUMBA_DISABLE_JIT=1"
)
def test_compile_error_suggests_compile_false():
    def not_numba(t, y, p, dydt):  # plain Python: numba cannot type the dict
        d = {"a": object()}
        dydt[0] = len(d)

    prob = make_problem(numba.njit(not_numba), [1.0], (0.0, 1.0), [0.0])
    prob.rhs_kernel = numba.njit(not_numba)
    with pytest.raises((TypeError, ValueError), match="compile=False|raised"):
        solve(prob)
    plain = make_problem(not_numba, [1.0], (0.0, 1.0), [0.0], compile=False)
    assert solve(plain, "Tsit5").success


# --- method="auto", Solution --------------------------------------------------------


def test_auto_rule():
    assert choose_method(lv()) == "Tsit5"
    prob, _ = diffusion_problem(64)
    assert choose_method(prob) == "BDF"
    assert solve(prob, t_eval=[0.1]).success
    assert set(METHODS) >= {"DP5", "Tsit5", "DP8", "BDF", "ESDIRK", "Rodas4"}


def test_auto_switches_to_bdf_on_a_stiff_problem():
    prob = make_problem(rober, [1.0, 0.0, 0.0], (0.0, 1e5), [0.04, 1e4, 3e7], rober_jac)
    auto = solve(prob, "auto", rtol=1e-6, atol=1e-10)
    bdf = solve(prob, "BDF", rtol=1e-6, atol=1e-10)
    assert auto.success and auto.stats == bdf.stats
    nonstiff = solve(lv(), "auto", rtol=1e-6, atol=1e-8)
    assert nonstiff.stats == solve(lv(), "Tsit5", rtol=1e-6, atol=1e-8).stats
    # a long nonstiff run past the switch budget is not mistaken for a stiff one
    long = solve(lv(t_span=(0.0, 600.0)), "auto", rtol=1e-6, atol=1e-8)
    assert long.success and long.stats["nsteps"] > 5000 and long.stats["njev"] == 0


def test_solution_fields_and_dense_output():
    sol = solve(lv(), "Tsit5", rtol=1e-8, atol=1e-10, dense=True)
    assert sol.success and sol.status == 0 and "successfully" in sol.message
    assert set(sol.stats) == {"nfev", "njev", "nlu", "nsteps", "nreject"}
    assert sol.t[0] == 0.0 and sol.t[-1] == 10.0 and sol.y.shape == (sol.t.size, 2)
    np.testing.assert_allclose(sol(sol.t), sol.y, rtol=1e-12, atol=1e-12)
    t_eval = np.linspace(0.0, 10.0, 37)
    on_grid = solve(lv(), "Tsit5", rtol=1e-8, atol=1e-10, t_eval=t_eval)
    np.testing.assert_allclose(sol(t_eval), on_grid.y, rtol=1e-12)
    assert sol(5.0).shape == (2,)
    with pytest.raises(ValueError, match="t must lie"):
        sol(11.0)
    with pytest.raises(ValueError, match="dense=True"):
        on_grid(1.0)


def test_bdf_dense_output_matches_t_eval():
    prob = make_problem(rober, [1.0, 0.0, 0.0], (0.0, 40.0), [0.04, 1e4, 3e7], rober_jac)
    t_eval = np.linspace(0.0, 40.0, 9)
    sol = solve(prob, "BDF", rtol=1e-6, atol=1e-10, dense=True)
    grid = solve(prob, "BDF", rtol=1e-6, atol=1e-10, t_eval=t_eval)
    np.testing.assert_allclose(sol(t_eval), grid.y, rtol=1e-12, atol=1e-16)


# --- published reference solutions and work budgets --------------------------------

# scaled error max |y - y_ref| / (atol + rtol |y_ref|) allowed (the global error of a
# per-step tolerance, measured about 1/3 of these), and work budgets ~1.3x measured.
BUDGETS = {
    # BDF with its default corrector test (BDF.nls_coef): about half the evaluations of f
    # that scipy's test took (1200, 530, 7600, 4800, 3000, 730 were the budgets then)
    ("HIRES", "BDF"): (30, 720, 420),
    ("POLLU", "BDF"): (10, 335, 220),
    ("OREGO", "BDF"): (300, 4300, 2450),
    ("VDPOL", "BDF"): (30, 2660, 1490),
    ("ROBER", "BDF"): (5, 1400, 985),
    ("E5", "BDF"): (25, 480, 300),
    ("AREN", "Tsit5"): (2000, 8100, 1360),
    ("AREN", "DP5"): (3e4, 7900, 1320),
    ("AREN", "DP8"): (3e3, 4000, 340),
    # TR-BDF2 is of order 2: at these tight tolerances its global error is larger
    ("HIRES", "ESDIRK"): (1200, 8200, 1460),
    ("POLLU", "ESDIRK"): (20, 2300, 520),
    ("OREGO", "ESDIRK"): (2400, 77000, 13200),
    ("VDPOL", "ESDIRK"): (120, 30000, 4800),
    ("ROBER", "ESDIRK"): (10, 21800, 3340),
    ("E5", "ESDIRK"): (90, 6200, 1010),
    # Rodas4 (order 4, a new Jacobian per step) meets the tolerance on every problem
    ("HIRES", "Rodas4"): (1, 4700, 680),
    ("POLLU", "Rodas4"): (1, 1150, 170),
    ("OREGO", "Rodas4"): (4, 31000, 4450),
    ("VDPOL", "Rodas4"): (1, 12000, 1710),
    ("ROBER", "Rodas4"): (1, 5400, 770),
    ("E5", "Rodas4"): (1, 2450, 345),
}


@pytest.mark.parametrize("name, method", sorted(BUDGETS))
def test_reference_solution_and_work_budget(name, method):
    ref = REFERENCES[name]
    max_err, max_nfev, max_nsteps = BUDGETS[name, method]
    sol = solve(ref.problem(), method, t_eval=[ref.t_span[1]], rtol=ref.rtol, atol=ref.atol)
    assert sol.success, sol.message
    y_ref = np.array(ref.y_ref)
    err = np.abs(sol.y[-1] - y_ref) / (ref.atol + ref.rtol * np.abs(y_ref))
    assert err.max() < max_err
    assert sol.stats["nfev"] < max_nfev and sol.stats["nsteps"] < max_nsteps


def test_bdf_newton_carries_its_rate_and_saves_evaluations():
    # BDF's corrector test (LSODE's and CVODE's: the rate carried between steps, a tolerance
    # relative to the error test's) lets most steps stop after one iteration; scipy's test
    # (nls_coef = 0, kept for the discrete adjoint) needs two in every step. Both must meet
    # the reference solution within the tolerance's error.
    from sensitivity.ode.bdf import BDF

    ref = REFERENCES["ROBER"]
    y_ref = np.array(ref.y_ref)
    stats = {}
    for name, meth in (("fast", "BDF"), ("scipy", BDF(nls_coef=0.0))):
        sol = solve(ref.problem(), meth, t_eval=[ref.t_span[1]], rtol=ref.rtol, atol=ref.atol)
        assert sol.success, sol.message
        err = np.abs(sol.y[-1] - y_ref) / (ref.atol + ref.rtol * np.abs(y_ref))
        assert err.max() < 5
        stats[name] = sol.stats
    assert stats["scipy"]["nfev"] >= 2 * stats["scipy"]["nsteps"]
    assert stats["fast"]["nfev"] < 0.6 * stats["scipy"]["nfev"]
    assert BDF().exact_corrector() is BDF().exact_corrector()
    assert BDF().exact_corrector().nls_coef == 0.0


@pytest.mark.parametrize("method", ["Tsit5", "BDF"])
def test_prepared_solver_matches_solve_with_new_p_and_y0(method):
    t_eval = np.linspace(0.0, 10.0, 11)
    solver = Solver(lv(), method, t_eval, rtol=1e-8, atol=1e-10)
    p_new, y0_new = np.array([1.2, 0.9, 2.5, 1.1]), np.array([0.8, 1.3])
    ours = solver(p=p_new, y0=y0_new)
    ref = solve(lv(p=p_new, y0=y0_new), method, t_eval, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(ours.y, ref.y)
    assert ours.stats == ref.stats
    np.testing.assert_array_equal(solver().y, solve(lv(), method, t_eval, 1e-8, 1e-10).y)
    with pytest.raises(ValueError, match="p must have shape"):
        solver(p=[1.0, 2.0])
    with pytest.raises(ValueError, match="y0 must be finite"):
        solver(y0=[np.nan, 1.0])


def test_rodas4_entry_refuses_sensitivity_arguments():
    # The stiff entries share one run(); only BDF and ESDIRK take forward sensitivities here
    # (Rodas4's run through sensitivity.ode.rodas_sens).
    from sensitivity.ode.solve import METHODS

    prob = lv()
    with pytest.raises(TypeError, match="Rodas4 does not take forward sensitivities"):
        METHODS["Rodas4"].run(None, True, None, prob.y0, prob.p, None, None, None, None, n_y=2)


def test_warmup_compiles_both_kernels_of_a_method_and_the_event_kernel_is_right():
    from sensitivity.ode import bdf
    from sensitivity.ode import solve as solve_module

    assert solve_module.warmup(["BDF"]) >= 0.0
    kinds = {sig[1] for sig in bdf.bdf_solve.signatures}  # g: None, or its addresses
    assert numba.types.none in kinds and any(isinstance(k, numba.types.Array) for k in kinds)
    # the warm-up problem is y' = -y, y(0) = 1 with an event at y = 1/2, t = ln 2
    for method in ("BDF", "Tsit5"):
        sol = solve(solve_module._WarmupProblem(), method, rtol=1e-10, atol=1e-12,
                    events=Events(solve_module._half_life))  # fmt: skip
        assert sol.t_events[0] == pytest.approx([np.log(2.0)], rel=1e-7)
        assert sol.y_events[0][0, 0] == pytest.approx(0.5, rel=1e-7)


@pytest.mark.parametrize("method", ["Tsit5", "BDF"])
@pytest.mark.parametrize("compile", [True, False])
def test_status_and_success_are_python_scalars(method, compile):
    """The status codes are numpy int64 inside the kernels (for the ahead-of-time compiler);
    a Solution carries plain int and bool whichever path ran (JSON, ``is True``)."""
    import json

    prob = make_problem(lotka_volterra, [1.0, 1.0], (0.0, 1.0), [1.5, 1.0, 3.0, 1.0],
                        lotka_volterra_jac, compile=compile)  # fmt: skip
    for max_steps in (100_000, 2):
        sol = solve(prob, method, max_steps=max_steps)
        assert type(sol.status) is int and type(sol.success) is bool
        json.dumps({"status": sol.status, "success": sol.success})
    assert sol.status == -2 and sol.success is False
