"""Ahead-of-time kernels (sensitivity.ode.aot): the same answers as the JIT kernels, bitwise;
solve() hands them exactly the argument types they were compiled for; a stale build is
never used; exceptions and failures come through as from the JIT kernels."""

import shutil

import numba
import numpy as np
import pytest

from sensitivity.ode import aot
from sensitivity.ode.problem import ODEProblem
from sensitivity.ode.solve import METHODS, Events, Solver, solve
from sensitivity.sens.forward import forward_sensitivity
from tests.problems import (
    diffusion_problem,
    lotka_volterra,
    lotka_volterra_jac,
    make_problem,
    rober,
    rober_jac,
)
from tests.rhs_suite import robertson as robertson_rhs

# the kernels the tests need when no full build is installed (a full build takes a minute)
KEYS = ["Tsit5", "DP8", ("bdf_solve", True), ("bdf_solve", False), ("rodas_solve", True),
        ("esdirk_solve", False)]  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``(directory, table)`` of the ahead-of-time kernels in use: the installed build when
    it matches the sources (``python -m sensitivity.ode.aot``, as the README's commands
    run), else a build of :data:`KEYS` into a temporary directory. Restores the default
    table afterwards."""
    if aot.DISABLED:
        pytest.skip("numba is off")
    directory, found = aot.DIRECTORY, aot.use()
    if not all(k in found for k in KEYS):
        if shutil.which("cc") is None and shutil.which("gcc") is None:
            pytest.skip("no C compiler to build the ahead-of-time kernels")
        directory = str(tmp_path_factory.mktemp("aot"))
        aot.build(directory, keys=KEYS)
        found = aot.use(directory)
    assert all(k in found for k in KEYS)
    yield directory, found
    aot.use()


@pytest.fixture
def table(built):
    return built[1]


@pytest.fixture
def calls(table, monkeypatch):
    """Count the calls of each ahead-of-time kernel, and check their argument types
    against the kernel's signature (a pycc function reads whatever memory it is given)."""
    sigs = {key: sig for key, _, sig in aot._exports()}
    counts = dict.fromkeys(table, 0)

    def checked(key, fn):
        def run(*args):
            for arg, want in zip(args, sigs[key], strict=True):
                got = numba.typeof(arg)
                if want is numba.types.none:
                    assert arg is None, key
                else:  # read-only inputs are fine: the kernels only read them
                    assert (got.dtype, got.ndim, got.layout) == (want.dtype, 1, "C"), (key, got)
            counts[key] += 1
            return fn(*args)

        return run

    monkeypatch.setattr(aot, "_TABLE", {k: checked(k, fn) for k, fn in table.items()})
    return counts


def lv():
    return make_problem(lotka_volterra, [1.0, 1.0], (0.0, 10.0), [1.5, 1.0, 3.0, 1.0],
                        lotka_volterra_jac)  # fmt: skip


def robertson():
    return make_problem(rober, [1.0, 0.0, 0.0], (0.0, 4e10), [0.04, 1e4, 3e7], rober_jac)


@numba.njit(cache=True)
def below_half(t, y, p, g):
    g[0] = y[0] - 0.5


def same(a, b):
    assert a.status == b.status and a.message == b.message and a.stats == b.stats
    np.testing.assert_array_equal(a.t, b.t)
    np.testing.assert_array_equal(a.y, b.y)
    assert len(a.t_events) == len(b.t_events)
    for x, y in zip(a.t_events + a.y_events, b.t_events + b.y_events, strict=True):
        np.testing.assert_array_equal(x, y)


CASES = [
    ("Tsit5", lv, dict(t_eval=np.linspace(0, 10, 101), rtol=1e-6, atol=1e-8)),
    ("DP8", lv, dict(dense=True, rtol=1e-9, atol=1e-12)),
    ("Tsit5", lv, dict(events=Events(below_half, 1, direction=-1), first_step=1e-3)),
    ("BDF", robertson, dict(t_eval=[4e-1, 4e3, 4e10], rtol=1e-4, atol=[1e-8, 1e-14, 1e-6])),
    ("BDF", robertson, dict(events=Events(below_half, 1, terminal=True), rtol=1e-6)),
    ("Rodas4", robertson, dict(rtol=1e-5, atol=1e-10, dense=True)),
    ("ESDIRK", robertson, dict(events=Events(below_half, 1), rtol=1e-5, atol=1e-10)),
    ("BDF", lambda: diffusion_problem(64)[0], dict(rtol=1e-6, atol=1e-8)),  # banded LU
]


@pytest.mark.parametrize("method, problem, kw", CASES)
def test_ahead_of_time_kernels_match_the_jit_bitwise(calls, method, problem, kw):
    prob = problem()
    fast = solve(prob, method, **kw)
    assert sum(calls.values()) == 1  # it ran the ahead-of-time kernel
    with aot.jit_only():
        ref = solve(prob, method, **kw)
    assert sum(calls.values()) == 1
    same(fast, ref)
    assert fast.success


@pytest.mark.parametrize(
    "y0, p, t_eval",
    [
        ([1, 1], (1.5, 1, 3, 1), [0, 5, 10]),  # ints and sequences
        (np.array([9.0, 1.0, 9.0, 1.0])[::2], np.arange(8.0)[1:8:2], np.arange(12.0)[::5]),
        (np.ones(2, np.float32), np.array([1.5, 1.0, 3.0, 1.0], order="F"), None),
    ],
)
def test_solve_gives_the_kernels_their_compiled_types(calls, y0, p, t_eval):
    """Strided, integer, float32 and read-only inputs reach the kernel as C-contiguous
    float64 copies (the wrapper in ``calls`` checks every argument)."""
    p = np.asarray(p)
    p.flags.writeable = False
    prob = make_problem(lotka_volterra, y0, (0.0, 10.0), p, lotka_volterra_jac)
    prob.y0, prob.p = y0, p  # as given, not as make_problem converts them
    for method in ("Tsit5", "BDF"):
        sol = solve(prob, method, t_eval=t_eval, atol=np.array([1e-8, 1e-9])[::1])
        assert sol.success
        solver = Solver(prob, method, t_eval=t_eval)
        assert solver(p=np.array([1.5, 1.0, 3.0, 1.0, 0.0])[:4], y0=[2, 1]).success
    assert calls["Tsit5"] == 2 and calls[("bdf_solve", True)] == 2


@numba.njit
def raises_after_one(t, y, p, dydt):
    if t > 1.0:
        raise ValueError("rhs gave up at t > 1")
    dydt[0] = -y[0]


@numba.njit
def nan_after_one(t, y, p, dydt):
    dydt[0] = np.nan if t > 1.0 else -y[0]


@numba.njit
def nan_jac(t, y, p, J):
    J[0, 0] = -1.0


@pytest.mark.parametrize("method", ["Tsit5", "BDF"])
def test_exceptions_and_failures_come_through(calls, method):
    prob = make_problem(raises_after_one, [1.0], (0.0, 2.0), [0.0], nan_jac)
    with pytest.raises(ValueError, match="rhs gave up"):
        solve(prob, method)
    sol = solve(make_problem(nan_after_one, [1.0], (0.0, 2.0), [0.0], nan_jac), method)
    assert not sol.success and "non-finite" in sol.message and "component 0" in sol.message
    assert sum(calls.values()) == 2


@pytest.mark.parametrize("method, key", [("BDF", ("bdf_solve", True)),
                                         ("ESDIRK", ("esdirk_solve", True))])  # fmt: skip
def test_forward_sensitivities_through_the_ahead_of_time_kernels(calls, built, method, key):
    """The staggered BDF/TR-BDF2 sensitivities call the same kernels with checked arrays:
    bitwise the JIT's answer, and a derivative that matches central differences."""
    if key not in built[1]:
        pytest.skip(f"{key} not built")
    p0 = np.array([0.04, 1e4, 3e7])
    ts = 0.4 * 10.0 ** np.arange(0, 8)

    def make(q):
        return ODEProblem(robertson_rhs, [1.0, 0.0, 0.0], (0.0, 4e7), q)

    kw = dict(t_eval=ts, method=method, rtol=1e-7, atol=np.array([1e-10, 1e-16, 1e-8]))
    fast = forward_sensitivity(make(p0), **kw)
    assert calls[key] >= 1
    with aot.jit_only():
        ref = forward_sensitivity(make(p0), **kw)
    np.testing.assert_array_equal(fast.y, ref.y)
    np.testing.assert_array_equal(fast.dy_dp, ref.dy_dp)
    e = 1e-5 * p0[0]
    fine = dict(method="BDF", t_eval=ts, rtol=1e-11, atol=np.array([1e-14, 1e-20, 1e-12]))
    hi = solve(make(p0 + [e, 0, 0]), **fine).y
    lo = solve(make(p0 - [e, 0, 0]), **fine).y
    fd = (hi - lo) / (2 * e)
    np.testing.assert_allclose(fast.dy_dp[:, :, 0], fd, atol=1e-4 * np.abs(fd).max())


def test_fits_refuses_arrays_of_other_types():
    key = ("bdf_solve", True)
    sig = {k: s for k, _, s in aot._exports()}[key]
    good = [None if t is numba.types.none else np.zeros(3, t.dtype.name) for t in sig]
    assert aot.fits(key, good)
    for i, t in enumerate(sig):
        if t is numba.types.none:
            bads = [np.zeros(3, np.int64), np.zeros(3)]
        else:
            other = "float64" if t.dtype.name == "int64" else "int64"
            same = np.zeros(6, t.dtype.name)
            bads = [np.zeros(3, other), np.zeros(3, np.float32), same[::2],
                    same.reshape(3, 2), same[:3].tolist()]  # fmt: skip
        for bad in bads:
            args = list(good)
            args[i] = bad
            assert not aot.fits(key, args), (i, bad)
    assert not aot.fits(key, good[:-1])


def test_a_stale_build_is_never_loaded(built, monkeypatch):
    """The file name carries the fingerprint: another fingerprint finds nothing and solves
    run the JIT kernels."""
    directory = built[0]
    assert aot._load(directory)
    monkeypatch.setattr(aot, "fingerprint", lambda: "0" * 20)  # a changed source, say
    assert aot._load(directory) == {}
    monkeypatch.setattr(aot, "_TABLE", None)  # as in a new process
    assert solve(lv(), "Tsit5").success
    assert aot._TABLE == {}


def test_every_method_has_an_export():
    keys = {key for key, _, _ in aot._exports()}
    for name, method in METHODS.items():
        if hasattr(method, "tableau"):
            assert method.tableau.name in keys
        else:
            kernel = method.kernel().py_func.__name__
            assert (kernel, True) in keys and (kernel, False) in keys


def test_the_build_command_says_why_it_could_not_build(monkeypatch, capsys):
    """No C compiler (say): the command explains and exits 0 (solves compile on first use),
    or 1 with --strict; nothing is loaded."""

    def fail(*args, **kwargs):
        raise OSError("no C compiler found")

    monkeypatch.setattr(aot, "build", fail)
    monkeypatch.setattr(aot, "DISABLED", False)
    assert aot.main([]) == 0
    out = capsys.readouterr().out
    assert "could not build" in out and "no C compiler" in out and "first use" in out
    assert aot.main(["--strict"]) == 1
