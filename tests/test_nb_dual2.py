"""Second-order duals in numba (``Dual2{K}``, ``DualArray2{K}``) and the second-order kernel.

Scalar operations: every rule of RULES, in every operand mix (Dual2 with Dual2, with a
float, with a Dual{K}), against complex step (first derivatives) and central differences of
complex-step first derivatives (second derivatives) of the rule's primal; non-analytic
rules against central differences throughout. Arrays and the kernel: the right-hand sides
of tests/rhs_suite.py at K = 1, 4, 8, with f, G = f_y S + f_p S_p and f_y u + f_p u_p
against complex-step Jacobians, the directional derivative dG against central differences
of the first-order compiled Jacobian kernels, and everything against the nested numpy-level
duals (``compile=False``).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from sensitivity.ad import nb
from sensitivity.ad.nb_array import similar
from sensitivity.ad.nb_dual2 import make_dual2
from sensitivity.ad.nb_dual2_array import dual2_array_k, dual2_parts
from sensitivity.ad.nb_ops import UNSUPPORTED, _targets
from sensitivity.ad.rules import RULES
from sensitivity.ode.problem import ODEProblem
from sensitivity.sens.dual2_kernels import aug_jvp_kernel, second_order_kernel
from sensitivity.sens.forward import forward_sensitivity
from tests.rhs_suite import SUITE, RHSCase, reference_jacobians

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 2
KS = [1, 4, 8]
FAST = ("lotka_volterra", "stencil", "accumulator")  # the rest are marked slow (compile time)

# ---- scalars ---------------------------------------------------------------------------------

# operand kinds: 2 = Dual2, 1 = Dual{K}, 0 = float
KINDS = {
    1: [(2,)],
    2: [(2, 2), (2, 0), (0, 2), (2, 1), (1, 2)],
    3: [(2, 0, 0), (2, 2, 2), (1, 2, 0)],
}


def _rule_cases():
    out = []
    for name, rule in RULES.items():
        if name in UNSUPPORTED:
            continue
        for c, kinds in enumerate(KINDS[rule.nin]):
            # the all-Dual2 mix in the fast set; the mixed operand kinds cost compile time
            marks = () if c == 0 else (pytest.mark.slow,)
            label = f"{name}-{''.join(map(str, kinds))}"
            out.append(pytest.param(name, kinds, id=label, marks=marks))
    return out


@njit
def _pick2(A, B, x, i):
    return make_dual2(A[i], B[i])


@njit
def _pick1(A, B, x, i):
    return A[i]


@njit
def _pick0(A, B, x, i):
    return x[i]


PICK = {2: _pick2, 1: _pick1, 0: _pick0}


def _driver(target, kinds):
    # x_i = (x_i + E_i eps) + (u_i + W_i eps) delta, lowered to operand kind kinds[i]
    nin = len(kinds)
    p0, p1, p2 = (PICK[k] for k in kinds + (0,) * (3 - nin))

    @njit
    def run(x, E, u, W):
        A = nb.dual_array_k(x, E, 0, K)
        B = nb.dual_array_k(u, W, 0, K)
        if nin == 1:
            y = target(p0(A, B, x, 0))
        elif nin == 2:
            y = target(p0(A, B, x, 0), p1(A, B, x, 1))
        else:
            y = target(p0(A, B, x, 0), p1(A, B, x, 1), p2(A, B, x, 2))
        out = dual2_array_k(np.zeros(1), np.zeros((1, K)), np.zeros(1), np.zeros((1, K)), 0, 0, K)
        out[0] = y
        a, ae, b, be = dual2_parts(out)
        return a[0], ae[0].copy(), b[0], be[0].copy()

    return run


def _first(rule, x, i):
    """df/dx_i at x: complex step (analytic rules) or 4th-order central differences."""
    if rule.analytic:
        xc = [complex(v) for v in x]
        xc[i] += 1e-30j
        return np.imag(rule.f(*xc)) / 1e-30
    h = 1e-4
    vals = []
    for s in (-2, -1, 1, 2):
        xs = list(x)
        xs[i] += s * h
        vals.append(rule.f(*xs))
    return (vals[0] - 8 * vals[1] + 8 * vals[2] - vals[3]) / (12 * h)


def _reference(rule, x, E, u, W):
    """Value, eps, delta and cross partials of f at the seeded point, independently."""
    n = rule.nin
    grad = lambda z: np.array([_first(rule, z, i) for i in range(n)])  # noqa: E731
    g = grad(x)
    hess = np.empty((n, n))  # central differences of the first derivatives
    h = 1e-3
    for j in range(n):
        cols = []
        for s in (-2, -1, 1, 2):
            xs = list(x)
            xs[j] += s * h
            cols.append(grad(xs))
        hess[:, j] = (cols[0] - 8 * cols[1] + 8 * cols[2] - cols[3]) / (12 * h)
    return rule.f(*x), g @ E, g @ u, u @ hess @ E + g @ W


@pytest.mark.parametrize("name, kinds", _rule_cases())
def test_rule(name, kinds):
    rule = RULES[name]
    rng = np.random.default_rng(11)
    lo_hi = [(lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo)) for lo, hi in rule.domain]
    x = np.array([rng.uniform(lo, hi) for lo, hi in lo_hi])
    n = rule.nin
    E, W = rng.standard_normal((n, K)), rng.standard_normal((n, K))
    u = rng.standard_normal(n)
    mask = np.array([k >= 1 for k in kinds], dtype=float)  # floats carry no partials
    E *= mask[:, None]
    two = np.array([k == 2 for k in kinds], dtype=float)  # only Dual2 carries a delta part
    u, W = u * two, W * two[:, None]
    target = np.clip if name == "clip" else _targets(name)[0]
    xp = np.concatenate([x, np.full(3 - n, 0.5)])  # unused slots of the pickers
    pad = lambda a: np.concatenate([a, np.zeros((3 - n,) + a.shape[1:])])  # noqa: E731
    got = _driver(target, kinds)(xp, pad(E), pad(u), pad(W))
    ref = _reference(rule, list(x), E, u, W)
    tol = 1e-9 if rule.analytic else 1e-6
    for what, a, b in zip(("value", "eps", "delta", "cross"), got, ref):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"{name} {kinds} {what}")


@njit
def _nan_safe(x):
    # sqrt(z*z) at z = 0 seeded along eps (row 0) or along delta (row 1): the tangents
    # reaching sqrt are zero, so every derivative is 0 (the chain rule alone gives NaN)
    A = nb.dual_array_k(x, np.array([[1.0] * K, [0.0] * K]), 0, K)
    B = nb.dual_array_k(np.array([0.0, 1.0]), np.zeros((2, K)), 0, K)
    out = dual2_array_k(np.zeros(2), np.zeros((2, K)), np.zeros(2), np.zeros((2, K)), 0, 0, K)
    for i in range(2):
        z = make_dual2(A[i], B[i])
        out[i] = np.sqrt(z * z)
    return dual2_parts(out)


def test_nan_safe():
    for part in _nan_safe(np.zeros(2)):
        assert np.all(part == 0.0)


@njit
def _branches(x):
    A = nb.dual_array_k(x, np.ones((2, K)), 0, K)
    B = nb.dual_array_k(np.ones(2), np.ones((2, K)), 0, K)
    z = make_dual2(A[0], B[0])
    s = 0.0  # unifies float with Dual2
    s += z * z if z > 1.0 else z * A[1]  # unifies Dual2 with Dual{K}
    if z <= A[1] and z != 0.5 and not np.isnan(z) and np.floor(z) >= 0:
        s = s * 3.0
    out = dual2_array_k(np.zeros(1), np.zeros((1, K)), np.zeros(1), np.zeros((1, K)), 0, 0, K)
    out[0] = s
    return dual2_parts(out)


def test_branches_are_pathwise():
    # z = x0 + e + (1 + e) d (every eps partial seeded 1), x1 = 2 + e (a Dual{K}, no d part)
    cases = {
        2.5: (6.25, 5.0, 5.0, 7.0),  # s = z^2: 2 x0, 2 x0, cross 2 + 2 x0
        0.7: (4.2, 8.1, 6.0, 9.0),  # s = 3 z x1: 3 (x1 + x0), 3 x1, cross 3 (1 + x1)
    }
    for x0, ref in cases.items():
        a, ae, b, be = _branches(np.array([x0, 2.0]))
        np.testing.assert_allclose(a[0], ref[0], rtol=1e-14)
        np.testing.assert_allclose(ae[0], [ref[1]] * K, rtol=1e-14)
        np.testing.assert_allclose(b[0], ref[2], rtol=1e-14)
        np.testing.assert_allclose(be[0], [ref[3]] * K, rtol=1e-14)


# ---- arrays and the second-order kernel on the right-hand-side suite ---------------------------


def kitchen_sink(t, y, p, dydt):
    # the array operations the suite does not reach: copy, zeros_like, empty_like,
    # negative indices, steps, slice stores of arrays and scalars, dot of mixed kinds
    n = y.shape[0]
    c = y.copy()
    w = similar(y, p)
    z = np.zeros_like(w)
    for i in range(y.size):
        w[i] = y[i]
    w[-1] = p[0]  # a float, Dual{K} or Dual2 into a Dual2 array
    z[1:3] = w[0:2]  # an array of the same kind (a float array into a dual one is not supported)
    z[3:] = p[1]
    e = np.empty_like(w)
    sq = np.dot(y[::2], c[::2])
    for i in range(n):
        e[i] = w[i] * z[i] + y[i] * sq
    s = np.sum(e) + np.dot(p, p[::-1]) * y.ndim
    pd = np.dot(y[: len(p)], p)
    for i in range(n):
        dydt[i] = e[i] - 0.1 * s * y[i] + pd * np.cos(y[i - 1])


CASES = SUITE + [RHSCase("kitchen_sink", kitchen_sink, 5, 3, True, seed=4)]


def _cases(skip=()):
    return [
        pytest.param(c, id=c.name, marks=() if c.name in FAST else (pytest.mark.slow,))
        for c in CASES
        if c.name not in skip
    ]


@pytest.fixture(scope="module")
def compiled():
    return {c.name: nb.compile_rhs(c.f) for c in CASES}


def _seeds(case, K):
    rng = np.random.default_rng(case.seed + 100 * K)
    n, m = case.n, case.m
    S, W = rng.standard_normal((n, K)), rng.standard_normal((n, K))
    Sp, Wp = rng.standard_normal((m, K)), rng.standard_normal((m, K))
    u, up = rng.standard_normal(n), rng.standard_normal(m)
    return S, Sp, u, up, W, Wp


def _outputs(n, K):
    return np.full(n, np.nan), np.full((n, K), np.nan), np.full(n, np.nan), np.full((n, K), np.nan)


def _first_order(fn, t, y, p):
    """df/dy and df/dp from the first-order compiled kernels (Dual{8})."""
    Jy, Jp = np.empty((len(y), len(y))), np.empty((len(y), len(p)))
    nb.make_kernel("jac", fn, 8)(t, y, p, Jy)
    nb.make_kernel("param_jac", fn, 8)(t, y, p, Jp)
    return Jy, Jp


def _directional_G(fn, t, y, p, S, Sp, u, up, h=1e-4):
    """d/ds of G(y + s u, p + s up) = J S + J_p S_p, 4th-order central differences."""
    Gs = []
    for s in (-2, -1, 1, 2):
        Jy, Jp = _first_order(fn, t, y + s * h * u, p + s * h * up)
        Gs.append(Jy @ S + Jp @ Sp)
    return (Gs[0] - 8 * Gs[1] + 8 * Gs[2] - Gs[3]) / (12 * h)


@pytest.mark.parametrize(
    "K", [pytest.param(K, marks=() if K == 4 else (pytest.mark.slow,)) for K in KS]
)
@pytest.mark.parametrize("case", _cases())
def test_kernel_against_differences(case, K, compiled):
    fn = compiled[case.name]
    t, y, p = case.point()
    S, Sp, u, up, W, Wp = _seeds(case, K)
    f, G, fd, dG = out = _outputs(case.n, K)
    second_order_kernel(fn, K)(t, y, p, S, Sp, u, up, W, Wp, *out)
    Jy, Jp = reference_jacobians(case, t, y, p)  # complex step, or central differences
    f_ref = np.empty(case.n)
    fn(t, y, p, f_ref)
    tol = dict(rtol=1e-11, atol=1e-11) if case.analytic else dict(rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(f, f_ref, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(G, Jy @ S + Jp @ Sp, **tol)
    np.testing.assert_allclose(fd, Jy @ u + Jp @ up, **tol)
    Jy1, Jp1 = _first_order(fn, t, y, p)  # exact Jacobians for the W terms
    ref = _directional_G(fn, t, y, p, S, Sp, u, up) + Jy1 @ W + Jp1 @ Wp
    np.testing.assert_allclose(dG, ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())


@pytest.mark.parametrize(
    "case", _cases(skip=("helper_call",))
)  # its njit helper takes no numpy duals
def test_kernel_matches_nested_numpy_duals(case, compiled):
    K = 4
    t, y, p = case.point()
    seeds = _seeds(case, K)
    got, ref = _outputs(case.n, K), _outputs(case.n, K)
    second_order_kernel(compiled[case.name], K)(t, y, p, *seeds, *got)
    second_order_kernel(case.f, K, compile=False)(t, y, p, *seeds, *ref)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13 * max(1.0, np.abs(b).max()))


def _p_dual_driver(rhs, K):
    @njit
    def drive(t, y, p, S, Sp, u, W):
        n = len(y)
        yd = dual2_array_k(y, S, u, W, 0, 0, K)
        out = dual2_array_k(np.zeros(n), np.zeros((n, K)), np.zeros(n), np.zeros((n, K)), 0, 0, K)
        rhs(t, yd, nb.dual_array_k(p, Sp, 0, K), out)  # p a Dual{K} array
        return dual2_parts(out)

    return drive


@pytest.mark.parametrize("case", _cases())
def test_parameter_kinds(case, compiled):
    # y a Dual2 array with p a float array (S_p = u_p = W_p = 0), a Dual{K} array
    # (u_p = W_p = 0) or a Dual2 array: each equals the full kernel with those seeds zero
    K = 4
    fn = compiled[case.name]
    t, y, p = case.point()
    S, Sp, u, up, W, Wp = _seeds(case, K)
    zm, zmk = np.zeros(case.m), np.zeros((case.m, K))
    full, plain = _outputs(case.n, K), _outputs(case.n, K)
    second_order_kernel(fn, K)(t, y, p, S, zmk, u, zm, W, zmk, *full)
    second_order_kernel(fn, K, wrt_p=False)(t, y, p, S, u, W, *plain)
    for a, b in zip(plain, full):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14)
    second_order_kernel(fn, K)(t, y, p, S, Sp, u, zm, W, zmk, *full)
    for a, b in zip(_p_dual_driver(fn, K)(t, y, p, S, Sp, u, W), full):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14)


NUMBA_OFF = """
import json, sys
sys.path.insert(0, {root!r})
from tests.test_nb_dual2 import numba_off_outputs
print(json.dumps(numba_off_outputs()))
"""


def numba_off_outputs():
    """Kernel outputs on three suite cases at K = 4, as lists (JSON)."""
    out = {}
    for case in CASES:
        if case.name in ("lotka_volterra", "stencil", "helper_call"):
            K = 4
            t, y, p = case.point()
            res = _outputs(case.n, K)
            second_order_kernel(nb.compile_rhs(case.f), K)(t, y, p, *_seeds(case, K), *res)
            out[case.name] = [a.tolist() for a in res]
    # Rodas4 sensitivities: the kernel's Python twin with the augmented JVP on numpy duals
    prob = ODEProblem(CASES[0].f, [1.0, 1.0], (0.0, 1.0), [1.5, 1.0, 3.0, 1.0])
    fs = forward_sensitivity(prob, t_eval=[0.5, 1.0], method="Rodas4", rtol=1e-6, atol=1e-8)
    out["rodas4"] = [fs.dy_dp.tolist()]
    return out


@pytest.mark.slow
@pytest.mark.ci
def test_numba_disabled_matches_compiled():
    # NUMBA_DISABLE_JIT=1: the kernel runs as Python on nested numpy-level duals, and the
    # njit helper of helper_call becomes a Python function that takes them
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run([sys.executable, "-c", NUMBA_OFF.format(root=ROOT)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    off = json.loads(proc.stdout.strip().splitlines()[-1])
    on = numba_off_outputs()
    assert set(off) == set(on) == {"lotka_volterra", "stencil", "helper_call", "rodas4"}
    for name in on:
        for a, b in zip(off[name], on[name]):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("compile", [True, False])
def test_augmented_jvp_layout(compile, compiled):
    # aug_jvp on the flat layouts of the sensitivity system equals the second-order kernel
    case, K = CASES[0], 3
    fn = compiled[case.name] if compile else case.f
    t, y, p = case.point()
    S, Sp, u, up, W, Wp = _seeds(case, K)
    n, N = case.n, case.n * (K + 1)
    out = np.full(2 * N, np.nan)
    Y, P = np.concatenate([y, S.ravel()]), np.concatenate([p, Sp.ravel()])
    V = np.concatenate([u, W.ravel(), up, Wp.ravel()])
    aug_jvp_kernel(fn, K, compile)(t, Y, P, V, out)
    ref = _outputs(n, K)
    second_order_kernel(fn, K, compile)(t, y, p, S, Sp, u, up, W, Wp, *ref)
    got = (out[:n], out[n:N].reshape(n, K), out[N : N + n], out[N + n :].reshape(n, K))
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14)
