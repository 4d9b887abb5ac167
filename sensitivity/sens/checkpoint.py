"""Checkpoint schedules for adjoints of long time loops, independent of the model.

An adjoint (reverse) sweep needs the forward state of every step in reverse
order. Storing all of them costs memory proportional to the number of steps;
a checkpoint schedule stores a few states and recomputes the others from the
nearest stored one. This module plans and runs such schedules for any time
loop; it knows nothing about the states except how to copy them.

The model
---------
States ``x_0, x_1, ..., x_n`` are linked by steps ``x_{i+1} = F_i(x_i)``,
``i = 0 ... n-1``. Reversing step ``i`` (the adjoint of ``F_i``) needs the
state ``x_i``. A schedule is a list of :class:`Action` s:

``("store", i)``
    copy the current state (which is ``x_i``) into checkpoint ``i``;
``("restore", i)``
    make a copy of checkpoint ``i`` the current state;
``("free", i)``
    drop checkpoint ``i``;
``("advance", i, j)``
    run steps ``i ... j-1`` on the current state (``x_i -> x_j``);
``("reverse", i)``
    run the adjoint of step ``i`` with the current state ``x_i``.

Steps are reversed in the order ``n-1, ..., 0``, each exactly once. At most
``n_snapshots`` checkpoints exist at any time; the current (working) state is
not counted. Plans:

* :func:`store_all`: every state is stored; no recomputation (``n`` snapshots);
* :func:`fixed_interval`: every ``k``-th state is stored on the forward sweep,
  and each segment is re-run storing all its states (``n/k + k`` snapshots,
  one recomputation of every step);
* :func:`binomial`: Griewank's binomial (Revolve) schedule [1]_, optimal in the
  number of recomputed steps for a known ``n`` and ``s`` snapshots:
  with ``r`` the smallest integer such that ``C(s + r, s) >= n``, it advances
  ``r n - C(s + r, s + 1)`` steps in total (:func:`binomial_cost`);
* :class:`OnlineCheckpointer`: for loops whose step count is not known in
  advance (adaptive time steps): it stores states at an interval that doubles
  whenever the snapshots are full, and :meth:`OnlineCheckpointer.schedule`
  then plans the reverse sweep with binomial schedules per segment;
* :func:`from_budget`: chooses one of the above from a memory budget in bytes
  (``"200MB"``) and the size of one state.

:func:`run` executes a plan with user callbacks and returns
:class:`CheckpointStats` (steps advanced, recomputation factor, peak number of
snapshots). Every plan can be checked with :func:`validate`.

Examples
--------
>>> import numpy as np
>>> sched = binomial(10, 3)
>>> xs = []
>>> def advance(i, j, x):  # steps i ... j-1 of x_{k+1} = x_k + 1
...     return x + (j - i)
>>> stats = run(sched, np.zeros(1), advance, lambda i, x: xs.append(float(x[0])))
>>> xs  # reversed steps see states x_9, ..., x_0
[9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]

References
----------
.. [1] A. Griewank and A. Walther, "Algorithm 799: revolve: an implementation
   of checkpointing for the reverse or adjoint mode of computational
   differentiation", ACM Trans. Math. Softw. 26(1), 19-45, 2000.
.. [2] P. Stumm and A. Walther, "New algorithms for optimal online
   checkpointing", SIAM J. Sci. Comput. 32(2), 836-854, 2010 (online setting).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np

ACTION_KINDS = ("store", "restore", "free", "advance", "reverse")


@dataclass(frozen=True)
class Action:
    """One instruction of a schedule (see the module docstring)."""

    kind: str
    i: int
    j: int = -1

    def __post_init__(self):
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"Action kind must be one of {ACTION_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class Schedule:
    """A checkpoint plan for ``n_steps`` steps.

    Attributes
    ----------
    actions : tuple of Action
    n_steps : int
    n_snapshots : int
        Largest number of checkpoints alive at once.
    forward_steps : int
        Steps advanced in total (first forward sweep included).
    name : str
    initial : tuple of int
        Checkpoints that must already exist when the plan starts (the online
        schedule's reverse plan); empty for offline plans.
    """

    actions: tuple
    n_steps: int
    n_snapshots: int
    forward_steps: int
    name: str
    initial: tuple = ()

    @property
    def recompute_factor(self):
        """Forward steps per step: 1 means no recomputation."""
        return self.forward_steps / max(self.n_steps, 1)


def _make(actions, n_steps, name, initial=()):
    alive, peak, fwd = set(initial), len(initial), 0
    for a in actions:
        if a.kind == "store":
            alive.add(a.i)
            peak = max(peak, len(alive))
        elif a.kind == "free":
            alive.discard(a.i)
        elif a.kind == "advance":
            fwd += a.j - a.i
    return Schedule(tuple(actions), n_steps, peak, fwd, name, tuple(initial))


def _check_n(n_steps):
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    return int(n_steps)


def store_all(n_steps):
    """Store every state on one forward sweep; reverse without recomputation."""
    n = _check_n(n_steps)
    acts = []
    for i in range(n):
        acts.append(Action("store", i))
        if i < n - 1:
            acts.append(Action("advance", i, i + 1))
    for i in range(n - 1, -1, -1):
        acts += [Action("restore", i), Action("reverse", i), Action("free", i)]
    return _make(acts, n, "store_all")


def fixed_interval(n_steps, interval):
    """Store every ``interval``-th state; re-run each segment storing all of it.

    Uses ``ceil(n / interval) + interval - 1`` snapshots at most and advances
    about ``2 n`` steps (each step is recomputed once).
    """
    n = _check_n(n_steps)
    k = int(interval)
    if k < 1:
        raise ValueError(f"interval must be a positive integer, got {interval!r}")
    starts = list(range(0, n, k))
    acts = []
    for c in starts:
        acts.append(Action("store", c))
        if c + k < n:
            acts.append(Action("advance", c, c + k))
    for c in reversed(starts):
        e = min(c + k, n)
        acts.append(Action("restore", c))
        for j in range(c + 1, e):
            acts += [Action("advance", j - 1, j), Action("store", j)]
        for j in range(e - 1, c - 1, -1):
            acts += [Action("restore", j), Action("reverse", j), Action("free", j)]
    return _make(acts, n, f"fixed_interval({k})")


def _beta(s, r):
    """Steps reversible with ``s`` snapshots and ``r`` repetitions: C(s + r, s)."""
    return math.comb(s + r, s)


def _reps(n, s):
    r = 0
    while _beta(s, r) < n:
        r += 1
    return r


@lru_cache(maxsize=None)
def binomial_cost(n_steps, n_snapshots):
    """Minimal number of advanced steps to reverse ``n`` steps with ``s`` snapshots.

    The snapshots include the one holding ``x_0``; reversals are not counted
    and neither is the first forward sweep beyond what the reversal needs.
    ``t(n, s) = r n - C(s + r, s + 1)`` with ``r`` the smallest integer such
    that ``C(s + r, s) >= n`` (Griewank 1992; [1]_ of the module).
    """
    n, s = int(n_steps), int(n_snapshots)
    if n <= 1:
        return 0
    if s < 1:
        raise ValueError("binomial_cost: at least one snapshot is needed")
    r = _reps(n, s)
    return r * n - _beta(s + 1, r - 1)


def _split(n, s):
    """An optimal number of steps to advance before the next checkpoint."""
    best = binomial_cost(n, s)
    r = _reps(n, s)
    lo = max(1, n - _beta(s - 1, r))
    hi = min(n - 1, _beta(s, r - 1))
    for m in range(hi, lo - 1, -1):
        if m + binomial_cost(n - m, s - 1) + binomial_cost(m, s) == best:
            return m
    raise AssertionError(f"no optimal split for n={n}, s={s}")  # pragma: no cover


def _revolve(a, b, s, acts):
    """Reverse steps a..b-1; x_a is current and checkpointed; s snapshots incl. it."""
    while b - a > 1:
        if s == 1:
            acts += [Action("advance", a, b - 1), Action("reverse", b - 1), Action("restore", a)]
            b -= 1
            continue
        m = _split(b - a, s)
        acts += [Action("advance", a, a + m), Action("store", a + m)]
        _revolve(a + m, b, s - 1, acts)
        acts += [Action("free", a + m), Action("restore", a)]
        b = a + m
    acts.append(Action("reverse", a))


def binomial(n_steps, n_snapshots):
    """Griewank-Walther binomial (Revolve) schedule: fewest recomputations.

    Parameters
    ----------
    n_steps : int
    n_snapshots : int
        Checkpoints that may exist at once, including the one holding ``x_0``.
        With ``n_snapshots >= n_steps`` this is :func:`store_all`.

    Returns
    -------
    Schedule
        ``forward_steps == binomial_cost(n_steps, n_snapshots)``.
    """
    n = _check_n(n_steps)
    s = int(n_snapshots)
    if s < 1:
        raise ValueError(f"n_snapshots must be at least 1, got {n_snapshots!r}")
    if s >= n:
        sched = store_all(n)
        return Schedule(sched.actions, n, sched.n_snapshots, sched.forward_steps, "binomial")
    acts = [Action("store", 0)]
    _revolve(0, n, s, acts)
    acts.append(Action("free", 0))
    return _make(acts, n, f"binomial({s})")


@dataclass
class OnlineCheckpointer:
    """Checkpoints for a loop whose number of steps is not known in advance.

    Call :meth:`record` with every state ``x_i`` of the forward sweep
    (``i = 0, 1, ...``); states are kept at multiples of an interval that
    doubles (dropping every other checkpoint) whenever ``n_snapshots`` would
    be exceeded. After the sweep, :meth:`schedule` plans the reverse sweep:
    the segments between kept checkpoints are reversed last to first, each by
    a binomial schedule with the snapshots not held by earlier checkpoints.
    Not optimal (Stumm-Walther online checkpointing [2]_ of the module is),
    but memory stays bounded and recomputation grows like ``log(n)``.

    Parameters
    ----------
    n_snapshots : int
        At least 2.
    copy : callable, optional
        ``copy(state) -> independent copy``; default deep-copies arrays.

    Examples
    --------
    An adaptive loop (the number of steps is known only at the end):

    >>> import numpy as np
    >>> oc = OnlineCheckpointer(4)
    >>> x, i = np.array([1.0]), 0
    >>> while x[0] < 50.0:  # x_{i+1} = 1.5 x_i until it passes 50
    ...     oc.record(i, x)
    ...     x, i = 1.5 * x, i + 1
    >>> seen = []
    >>> stats = run(oc.schedule(i), None, lambda a, b, y: y * 1.5 ** (b - a),
    ...             lambda k, y: seen.append(round(float(y[0]), 3)), checkpoints=oc.store)
    >>> seen[:3], len(seen), oc.peak <= 4
    ([38.443, 25.629, 17.086], 10, True)
    """

    n_snapshots: int
    copy: Callable | None = None
    interval: int = 1
    store: dict = field(default_factory=dict)
    peak: int = 0

    def __post_init__(self):
        if int(self.n_snapshots) < 2:
            raise ValueError(f"n_snapshots must be at least 2, got {self.n_snapshots!r}")
        if self.copy is None:
            self.copy = _copy_state

    def record(self, i, state):
        """Offer state ``x_i`` (called for every ``i`` in increasing order)."""
        if i % self.interval:
            return
        if len(self.store) >= self.n_snapshots:
            self.interval *= 2
            for j in [j for j in self.store if j % self.interval]:
                del self.store[j]
            if i % self.interval:
                return
        self.store[i] = self.copy(state)
        self.peak = max(self.peak, len(self.store))

    def shrink(self, n_snapshots):
        """Lower ``n_snapshots`` mid-sweep (a growing record left less memory), thinning
        the kept states by doubling the interval as :meth:`record` does."""
        if int(n_snapshots) < 2:
            raise ValueError(f"n_snapshots must be at least 2, got {n_snapshots!r}")
        self.n_snapshots = int(n_snapshots)
        while len(self.store) > self.n_snapshots:
            self.interval *= 2
            for j in [j for j in self.store if j % self.interval]:
                del self.store[j]

    def schedule(self, n_steps):
        """Plan the reverse sweep for the ``n_steps`` steps that were taken."""
        n = _check_n(n_steps)
        kept = sorted(j for j in self.store if j < n)
        if not kept or kept[0] != 0:
            raise ValueError("OnlineCheckpointer: state 0 was never recorded")
        acts = []
        for k in range(len(kept) - 1, -1, -1):
            a, b = kept[k], kept[k + 1] if k + 1 < len(kept) else n
            free = self.n_snapshots - k  # checkpoints kept[0..k-1] still held
            acts.append(Action("restore", a))
            _revolve(a, b, max(free, 1), acts)
            acts.append(Action("free", a))
        sched = _make(acts, n, "online", initial=tuple(kept))
        fwd = sched.forward_steps + n  # the recording sweep itself
        return Schedule(sched.actions, n, sched.n_snapshots, fwd, "online", sched.initial)


def parse_bytes(size):
    """``"200MB"``, ``"1.5 GiB"``, ``"512k"`` or an int -> bytes (int)."""
    if isinstance(size, (int, np.integer)):
        return int(size)
    units = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
    m = re.fullmatch(r"\s*([0-9.]+(?:e[+-]?\d+)?)\s*([kmgt]?)(i?)b?\s*", str(size).lower())
    if not m:
        raise ValueError(f"memory_budget must be bytes or a string like '200MB', got {size!r}")
    base = 1024 ** "_kmgt".index(m.group(2)) if m.group(3) and m.group(2) else None
    return int(float(m.group(1)) * (base or units[m.group(2)]))


def from_budget(n_steps, state_bytes, memory_budget, working_bytes=0):
    """Choose a schedule that keeps checkpoints within ``memory_budget``.

    Parameters
    ----------
    n_steps : int
    state_bytes : int
        Bytes of one stored state.
    memory_budget : int or str
        Total bytes allowed (``"200MB"``), of which ``working_bytes`` are
        already taken by the caller's working arrays.
    working_bytes : int

    Returns
    -------
    Schedule
        :func:`store_all` when every state fits, else :func:`binomial` with
        as many snapshots as fit. Its ``recompute_factor`` is the price.

    Raises
    ------
    ValueError
        If not even two states fit.
    """
    n = _check_n(n_steps)
    budget = parse_bytes(memory_budget)
    s = (budget - int(working_bytes)) // max(int(state_bytes), 1)
    if s < 1:
        raise ValueError(
            f"memory_budget {budget} bytes leaves room for {s} checkpoints of "
            f"{state_bytes} bytes after {working_bytes} working bytes; at least 1 is needed"
        )
    return store_all(n) if s >= n else binomial(n, int(s))


def validate(schedule):
    """Simulate a schedule symbolically; raise AssertionError if it is wrong.

    Checks that each ``reverse(i)`` sees state ``x_i``, that steps are
    reversed ``n-1 ... 0`` once each, that restores use live checkpoints, and
    that no more than ``schedule.n_snapshots`` are alive at once.
    """
    alive, cur, todo = set(schedule.initial), 0 if not schedule.initial else None, []
    expect = schedule.n_steps - 1
    for a in schedule.actions:
        if a.kind == "store":
            assert cur is not None, "store without a current state"
            alive.add(cur)
            assert a.i == cur, f"store {a.i} but the current state is {cur}"
            assert len(alive) <= schedule.n_snapshots, "too many snapshots"
        elif a.kind == "restore":
            assert a.i in alive, f"restore of missing checkpoint {a.i}"
            cur = a.i
        elif a.kind == "free":
            alive.discard(a.i)
        elif a.kind == "advance":
            assert cur == a.i and a.j > a.i, f"advance {a.i}->{a.j} from state {cur}"
            cur = a.j
        else:
            assert a.i == cur == expect, f"reverse {a.i} at state {cur}, expected {expect}"
            todo.append(a.i)
            expect -= 1
            cur = None
    assert todo == list(range(schedule.n_steps - 1, -1, -1)), "not every step reversed"
    return True


@dataclass(frozen=True)
class CheckpointStats:
    """What :func:`run` did.

    Attributes
    ----------
    n_steps, forward_steps, reverse_steps : int
    recompute_factor : float
        ``forward_steps / n_steps``.
    peak_snapshots : int
    schedule : str
    """

    n_steps: int
    forward_steps: int
    reverse_steps: int
    recompute_factor: float
    peak_snapshots: int
    schedule: str


def _copy_state(state):
    if isinstance(state, tuple):
        return tuple(np.array(x, copy=True) for x in state)
    return np.array(state, copy=True)


def run(
    schedule,
    state0,
    advance,
    reverse,
    copy=None,
    checkpoints=None,
    restore_copies=True,
    release=None,
):
    """Execute a schedule with the caller's forward and adjoint steps.

    Parameters
    ----------
    schedule : Schedule
    state0 : object
        ``x_0`` (ignored when the schedule starts from ``checkpoints``).
    advance : callable
        ``advance(i, j, x_i) -> x_j``: run steps ``i ... j-1`` (one call per
        ``advance`` action, so a compiled loop can take the whole range). It
        may overwrite and reuse the buffers of its argument: stored
        checkpoints are always copies.
    reverse : callable
        ``reverse(i, x_i)``: the adjoint of step ``i``; it keeps its own
        adjoint state. It may overwrite ``x_i``.
    copy : callable, optional
        ``copy(state)``; default copies an array or a tuple of arrays.
    checkpoints : dict, optional
        Existing checkpoints ``{i: x_i}`` (from :class:`OnlineCheckpointer`).
    restore_copies : bool
        ``True``: a restore hands out a copy of the checkpoint. ``False``: the
        checkpoint itself, which is only safe when ``advance`` and ``reverse``
        never write into the state they are given; it saves one copy per
        reversed step (as expensive as a step for a cheap stencil).
    release : callable, optional
        ``release(x)`` is called with a checkpoint when it is freed, so that
        ``copy`` can reuse its buffers (a pool of preallocated states).

    Returns
    -------
    CheckpointStats
    """
    copy = _copy_state if copy is None else copy
    store = dict(checkpoints or {})
    missing = set(schedule.initial) - set(store)
    if missing:
        raise ValueError(f"run: checkpoints {sorted(missing)} required by the schedule are missing")
    cur, fwd, rev, peak = state0, 0, 0, len(store)
    for a in schedule.actions:
        if a.kind == "advance":
            cur = advance(a.i, a.j, cur)
            fwd += a.j - a.i
        elif a.kind == "store":
            store[a.i] = copy(cur)
            peak = max(peak, len(store))
        elif a.kind == "restore":
            cur = copy(store[a.i]) if restore_copies else store[a.i]
        elif a.kind == "free":
            x = store.pop(a.i, None)
            if release is not None and x is not None:
                release(x)
        else:
            reverse(a.i, cur)
            rev += 1
    if schedule.name == "online":
        fwd += schedule.n_steps
    n = schedule.n_steps
    return CheckpointStats(n, fwd, rev, fwd / n, peak, schedule.name)
