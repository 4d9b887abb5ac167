"""Checkpoint schedules: correctness, optimality of the binomial plan, budgets."""

from functools import lru_cache

import numpy as np
import pytest

from sensitivity.sens import checkpoint as cp


@lru_cache(maxsize=None)
def brute_cost(n, s):
    """Fewest advances to reverse n steps with s snapshots (dynamic programming)."""
    if n <= 1:
        return 0
    if s == 1:
        return n * (n - 1) // 2
    return min(m + brute_cost(n - m, s - 1) + brute_cost(m, s) for m in range(1, n))


def _replay(schedule, n, seed=0):
    """Run a schedule on a nonlinear scalar map; return states seen by reverse."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 1.5, n)
    xs = [np.array([0.3])]
    for i in range(n):
        xs.append(np.sin(a[i] * xs[-1]) + 0.1)
    seen = {}

    def advance(i, j, x):
        for k in range(i, j):
            x[:] = np.sin(a[k] * x) + 0.1  # in place: stored checkpoints must be copies
        return x

    def reverse(i, x):
        seen[i] = x.copy()
        x[:] = np.nan  # the driver must not rely on x after a reversal

    stats = cp.run(schedule, xs[0].copy(), advance, reverse)
    for i in range(n):
        assert seen[i][0] == xs[i][0], f"{schedule.name}: reverse {i} saw the wrong state"
    return stats


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 55])
@pytest.mark.parametrize("s", [1, 2, 3, 5])
def test_binomial_is_correct_and_optimal(n, s):
    sched = cp.binomial(n, s)
    assert cp.validate(sched)
    stats = _replay(sched, n)
    assert stats.reverse_steps == n
    assert sched.n_snapshots <= max(s, 1)
    if s < n:
        assert sched.forward_steps == cp.binomial_cost(n, s) == brute_cost(n, s)
    assert stats.forward_steps == sched.forward_steps


def test_binomial_cost_formula_examples():
    # s = 1: every state is recomputed from x_0: n(n-1)/2
    assert cp.binomial_cost(10, 1) == 45
    # n = C(s + r, s) exactly with r = 2: 2n - C(s + 2, s + 1) = 2n - (s + 2)
    assert cp.binomial_cost(10, 3) == 2 * 10 - 5


@pytest.mark.parametrize("interval", [1, 3, 4, 10])
def test_fixed_interval(interval):
    n = 23
    sched = cp.fixed_interval(n, interval)
    assert cp.validate(sched)
    _replay(sched, n)
    assert sched.n_snapshots <= -(-n // interval) + interval - 1
    assert sched.forward_steps <= 2 * n


def test_store_all():
    sched = cp.store_all(9)
    assert cp.validate(sched)
    assert _replay(sched, 9).recompute_factor < 1.0
    assert sched.n_snapshots == 9


@pytest.mark.parametrize("n", [1, 5, 17, 100, 333])
def test_online_checkpointer_unknown_step_count(n):
    s = 6
    oc = cp.OnlineCheckpointer(s)
    rng = np.random.default_rng(1)
    a = rng.uniform(0.5, 1.5, n)
    xs = [np.array([0.3])]
    x = xs[0].copy()
    for i in range(n):  # the forward loop does not know n in advance
        oc.record(i, x)
        x = np.sin(a[i] * x) + 0.1
        xs.append(x)
    assert oc.peak <= s
    sched = oc.schedule(n)
    assert cp.validate(sched)
    assert sched.n_snapshots <= s
    seen = {}
    stats = cp.run(
        sched,
        None,
        lambda i, j, x: _steps(a, i, j, x),
        lambda i, x: seen.__setitem__(i, x[0]),
        checkpoints=oc.store,
    )
    assert [seen[i] for i in range(n)] == [xs[i][0] for i in range(n)]
    assert stats.recompute_factor <= 1 + np.log2(max(n, 2)) + 1


def test_from_budget_chooses_and_reports():
    n, state = 600, 1000
    assert cp.from_budget(n, state, 10**6).name == "store_all"
    sched = cp.from_budget(n, state, "60kB")
    assert sched.name == "binomial(60)" and sched.n_snapshots <= 60
    assert 1.0 < sched.recompute_factor < 3.0
    sched = cp.from_budget(n, state, "60kB", working_bytes=35_000)
    assert sched.n_snapshots <= 25
    with pytest.raises(ValueError, match="memory_budget"):
        cp.from_budget(n, state, 500)


def test_parse_bytes():
    assert cp.parse_bytes("200MB") == 200 * 10**6
    assert cp.parse_bytes("1.5 GiB") == int(1.5 * 2**30)
    assert cp.parse_bytes("512k") == 512_000
    assert cp.parse_bytes(123) == 123
    with pytest.raises(ValueError, match="memory_budget"):
        cp.parse_bytes("lots")


def test_bad_input():
    with pytest.raises(ValueError, match="n_steps"):
        cp.binomial(0, 3)
    with pytest.raises(ValueError, match="n_snapshots"):
        cp.binomial(5, 0)
    with pytest.raises(ValueError, match="interval"):
        cp.fixed_interval(5, 0)
    with pytest.raises(ValueError, match="Action kind"):
        cp.Action("jump", 1)
    with pytest.raises(ValueError, match="missing"):
        cp.run(_online_sched(), None, None, None)


def _online_sched():
    oc = cp.OnlineCheckpointer(3)
    for i in range(4):
        oc.record(i, np.zeros(1))
    return oc.schedule(4)


def _steps(a, i, j, x):
    for k in range(i, j):
        x = np.sin(a[k] * x) + 0.1
    return x


def test_docstring_examples():
    import doctest

    assert doctest.testmod(cp).failed == 0
