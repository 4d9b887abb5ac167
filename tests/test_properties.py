"""Property tests: random compositions of primitives and shapes.

Forward and reverse mode must agree through the dot-product identity, the
Jacobian modes must agree, and both must match complex step.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import sensitivity as sn
from sensitivity.testing import dot_product_test

# Unary steps, each kept inside its rule's domain by an analytic squashing.
UNARY = {
    "sin": np.sin,
    "cos": np.cos,
    "exp": lambda a: np.exp(0.3 * a),
    "log": lambda a: np.log(1.5 + a * a),
    "sqrt": lambda a: np.sqrt(2.0 + a * a),
    "tanh": np.tanh,
    "arctan": np.arctan,
    "sinh": lambda a: np.sinh(0.5 * a),
    "reciprocal": lambda a: 1.0 / (2.0 + a * a),
    "power": lambda a: (1.2 + a * a) ** 1.5,
    "expm1": lambda a: np.expm1(0.2 * a),
    "log1p": lambda a: np.log1p(a * a),
    "erf": lambda a: __import__("scipy.special").special.erf(a),
    "square": np.square,
    "arcsinh": np.arcsinh,
}
# Binary steps combining the running value with the input x.
BINARY = {
    "add": lambda a, x: a + x,
    "sub": lambda a, x: x - a,
    "mul": lambda a, x: a * x,
    "div": lambda a, x: a / (1.5 + x * x),
    "pow": lambda a, x: (1.1 + a * a) ** (0.3 * x),
    "hypot": lambda a, x: np.sqrt(a * a + x * x + 0.5),
    "arctan2": lambda a, x: np.arctan(a / (2.0 + x * x)),
}
# Structural steps that keep the shape of the running value.
STRUCT = {
    "cumsum": lambda a: np.cumsum(a, axis=-1) if np.ndim(a) else a,
    "flip": lambda a: np.flip(a, -1) if np.ndim(a) else a,
    "meanshift": lambda a: a - np.mean(a),
    "sumscale": lambda a: a * np.sum(a * a),
    "roll": lambda a: np.roll(a, 1, axis=-1) if np.ndim(a) else a,
    "matmul": lambda a: (a @ np.ones((a.shape[-1], a.shape[-1])) / 3.0) if np.ndim(a) else a,
    "where": lambda a: np.where(np.arange(np.size(a)).reshape(np.shape(a)) % 2 == 0, a, 2 * a),
    "concat_slice": lambda a: (
        np.concatenate([a[..., 1:], a[..., :1] ** 2], axis=-1) if np.ndim(a) else a
    ),
}

SHAPES = st.sampled_from([(), (3,), (2, 3), (4,)])
STEP = st.one_of(
    st.tuples(st.just("u"), st.sampled_from(sorted(UNARY))),
    st.tuples(st.just("b"), st.sampled_from(sorted(BINARY))),
    st.tuples(st.just("s"), st.sampled_from(sorted(STRUCT))),
)


def build(steps):
    def f(x):
        a = x
        for kind, name in steps:
            if kind == "u":
                a = UNARY[name](a)
            elif kind == "b":
                a = BINARY[name](a, x)
            else:
                a = STRUCT[name](a)
        return a

    return f


def complex_step_jacobian(f, x):
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = 1e-30
        cols.append(np.imag(f(x + 1j * e.reshape(x.shape))).ravel() / 1e-30)
    return np.stack(cols, -1)


@settings(max_examples=60, deadline=None)
@given(shape=SHAPES, steps=st.lists(STEP, min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_random_compositions(shape, steps, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, shape)
    f = build(steps)
    n_out = np.size(f(x))
    ref = complex_step_jacobian(f, x)
    Jf = sn.jacobian(f, x, mode="forward", chunk=2).reshape(n_out, -1)
    Jr = sn.jacobian(f, x, mode="reverse").reshape(n_out, -1)
    scale = max(1.0, np.abs(ref).max())
    np.testing.assert_allclose(Jf, ref, rtol=1e-11, atol=1e-11 * scale)
    np.testing.assert_allclose(Jr, Jf, rtol=1e-11, atol=1e-11 * scale)
    # the round-off floor scales with |J|: a null direction gives 0 vs 1e-17
    res = dot_product_test(
        lambda v: sn.jvp(f, x, v)[1],
        lambda w: sn.vjp(f, x, w)[1],
        shape_in=shape,
        seed=seed,
        rtol=1e-10,
        atol=1e-13 * scale * max(1, n_out) * max(1, np.size(x)),
    )
    assert res.passed, (res.lhs, res.rhs)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.sampled_from([(3,), (4,)]),
    steps=st.lists(STEP, min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_hessian_is_symmetric_and_matches_hvp(shape, steps, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, shape)
    g = build(steps)

    def f(z):
        return np.sum(g(z) ** 2)

    H = sn.hessian(f, x)
    v = rng.standard_normal(shape)
    scale = max(1.0, np.abs(H).max())
    np.testing.assert_allclose(H, H.T, atol=1e-10 * scale)
    np.testing.assert_allclose(sn.hvp(f, x, v), H @ v, atol=1e-10 * scale * np.abs(v).sum())
