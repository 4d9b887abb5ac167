"""Column colouring, sparse Jacobians from colourings, sparsity detection."""

import numpy as np
import pytest
import scipy.sparse as sp

from sensitivity.ad import nb, sparsity
from sensitivity.ad.sparsity import (
    as_pattern,
    color_columns,
    colour_runs,
    colouring_is_valid,
    compression,
)
from sensitivity.ode.problem import ODEProblem


def tridiagonal(n):
    return sp.diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1], format="csr")


def test_explicit_zeros_are_not_structural():
    S = sp.csr_matrix((np.array([1.0, 0.0, 1.0]), ([0, 0, 1], [0, 1, 1])), shape=(2, 2))
    colors, nc = color_columns(S)
    assert nc == 1


def five_point(nx, ny):
    T = sp.diags([np.ones(nx - 1), np.ones(nx), np.ones(nx - 1)], [-1, 0, 1])
    off = sp.diags([np.ones(ny - 1), np.ones(ny - 1)], [-1, 1])
    return sp.csr_matrix(sp.kron(sp.eye(ny), T) + sp.kron(off, sp.eye(nx)))


@pytest.mark.parametrize("n", [2, 3, 10, 1000])
def test_tridiagonal_three_colours(n):
    colors, nc = color_columns(tridiagonal(n))
    assert nc <= 3
    assert colouring_is_valid(tridiagonal(n), colors)


@pytest.mark.parametrize("shape", [(4, 4), (10, 7), (30, 30)])
def test_five_point_five_colours(shape):
    S = five_point(*shape)
    colors, nc = color_columns(S)
    assert nc <= 5
    assert colouring_is_valid(S, colors)


def test_five_point_five_colours_on_a_large_grid():
    # DSATUR (a heap, not a scan per column) runs at any size: 240 x 240 = 57 600 columns,
    # where the greedy colourings need 7
    S = five_point(240, 240)
    colors, nc = color_columns(S)
    assert nc <= 5
    assert colouring_is_valid(S, colors)


def _dsatur_by_scan(S, maxc):
    """Brelaz's DSATUR in plain Python, choosing each column by a scan (the reference)."""
    S = sp.csr_matrix(S)
    C = S.tocsc()
    m = S.shape[1]
    nbrs = [set(S.indices[S.indptr[i] : S.indptr[i + 1]]) for i in range(S.shape[0])]
    deg = [sum(len(nbrs[i]) for i in C.indices[C.indptr[j] : C.indptr[j + 1]]) for j in range(m)]
    colors, seen = [-1] * m, [set() for _ in range(m)]
    for _ in range(m):
        best = max((j for j in range(m) if colors[j] < 0), key=lambda j: (len(seen[j]), deg[j], -j))
        c = min(set(range(maxc + 1)) - seen[best])
        if c >= maxc:
            return None
        colors[best] = c
        for i in C.indices[C.indptr[best] : C.indptr[best + 1]]:
            for j in nbrs[i]:
                seen[j].add(c)
    return np.array(colors)


@pytest.mark.parametrize("density", [0.01, 0.03, 0.1])
def test_dsatur_heap_chooses_as_the_scan(density):
    S = as_pattern(sp.random(120, 120, density=density, random_state=3) + sp.eye(120), (120, 120))
    C = S.tocsc()
    args = [x.astype(np.int64) for x in (S.indptr, S.indices, C.indptr, C.indices)]
    colors, nc = sparsity._dsatur(*args, 64)
    ref = _dsatur_by_scan(S, 64)
    np.testing.assert_array_equal(colors, ref)
    assert nc == ref.max() + 1 and colouring_is_valid(S, colors)
    few, nc_few = sparsity._dsatur(*args, 2)  # more colours than allowed
    assert nc_few == -1 and _dsatur_by_scan(S, 2) is None


def test_colouring_random_patterns_valid():
    rng = np.random.default_rng(0)
    for _ in range(5):
        S = sp.random(40, 30, density=0.1, random_state=rng, format="csr")
        colors, nc = color_columns(S)
        assert colouring_is_valid(S, colors)
        assert nc <= 30


def test_validity_check_can_fail():
    S = tridiagonal(5)
    assert not colouring_is_valid(S, np.zeros(5, dtype=int))


def test_dense_pattern_needs_all_colours():
    colors, nc = color_columns(np.ones((4, 6)))
    assert nc == 6 and sorted(colors) == list(range(6))


def test_as_pattern_checks_shape():
    with pytest.raises(ValueError, match="jac_sparsity"):
        as_pattern(np.eye(3), (4, 4))


def heat(t, y, p, dydt):
    n = len(y)
    for i in range(1, n - 1):
        dydt[i] = p[i] * (y[i + 1] - 2.0 * y[i] + y[i - 1]) + np.sin(y[i]) * y[i - 1]
    dydt[0] = p[0] * (y[1] - 2.0 * y[0])
    dydt[n - 1] = p[n - 1] * (y[n - 2] - 2.0 * y[n - 1])


def heat2d(t, y, p, dydt):
    nx = 8
    ny = len(y) // nx
    for j in range(ny):
        for i in range(nx):
            k = j * nx + i
            c = -4.0 * y[k]
            if i > 0:
                c += y[k - 1]
            if i < nx - 1:
                c += y[k + 1]
            if j > 0:
                c += y[k - nx]
            if j < ny - 1:
                c += y[k + nx]
            dydt[k] = p[0] * c - y[k] ** 3


@pytest.mark.parametrize("n", [80, 301])
def test_sparse_equals_dense_1d(n):
    rng = np.random.default_rng(n)
    y0, p = rng.uniform(0, 1, n), rng.uniform(0.5, 1.5, n)
    sparse = ODEProblem(heat, y0, (0.0, 1.0), p)  # pattern detected (n >= 64)
    dense = ODEProblem(heat, y0, (0.0, 1.0), p, jac_sparsity=False, param_sparsity=False)
    assert sparse.jac_sparsity.nnz == 3 * n - 2
    assert sparse.jac_colors[1] == 3
    assert sparse.param_colors[1] == 1  # df/dp is diagonal
    y = rng.uniform(0, 1, n)
    J = sparse.jacobian(0.2, y)
    assert sp.issparse(J)
    np.testing.assert_allclose(J.toarray(), dense.jacobian(0.2, y), rtol=1e-14, atol=1e-15)
    Jp = sparse.param_jacobian(0.2, y)
    assert sp.issparse(Jp)
    np.testing.assert_allclose(Jp.toarray(), dense.param_jacobian(0.2, y), rtol=1e-14, atol=0)
    # the fast construction gives a valid matrix (rows ordered by colour, no duplicates)
    J.check_format(full_check=True)
    assert J.nnz == sparse.jac_sparsity.nnz
    Js = J.copy()
    Js.sum_duplicates()  # sorts
    assert Js.nnz == J.nnz
    np.testing.assert_array_equal(Js.indices, sparse.jac_sparsity.indices)
    J.indices[:] = 0
    J.data[:] = 7.0
    assert np.all(sparse.jac_sparsity.data == 1.0)
    again = sparse.jacobian(0.2, y)
    np.testing.assert_allclose(again.toarray(), dense.jacobian(0.2, y), rtol=1e-14, atol=1e-15)


def test_sparse_equals_dense_2d_given_pattern():
    nx, ny = 8, 9
    S = five_point(nx, ny) + sp.eye(nx * ny)
    rng = np.random.default_rng(5)
    y0, p = rng.uniform(0, 1, nx * ny), np.array([0.7])
    prob = ODEProblem(heat2d, y0, (0.0, 1.0), p, jac_sparsity=S)
    dense = ODEProblem(heat2d, y0, (0.0, 1.0), p, jac_sparsity=False)
    assert prob.jac_colors[1] <= 5
    np.testing.assert_allclose(
        prob.jacobian(0.0, y0).toarray(), dense.jacobian(0.0, y0), rtol=1e-14
    )


def test_detected_pattern_2d():
    nx, ny = 8, 9
    y0 = np.random.default_rng(6).uniform(0, 1, nx * ny)
    prob = ODEProblem(heat2d, y0, (0.0, 1.0), [0.7])
    S = five_point(nx, ny) + sp.eye(nx * ny)
    assert (prob.jac_sparsity != as_pattern(S, S.shape)).nnz == 0
    assert prob.jac_colors[1] <= 5


def test_too_small_pattern_gives_wrong_jacobian():
    # A pattern that misses entries drops them: the sparse path trusts the pattern.
    n = 80
    y0 = np.linspace(0.1, 1, n)
    prob = ODEProblem(heat, y0, (0.0, 1.0), np.ones(n), jac_sparsity=sp.eye(n))
    dense = ODEProblem(heat, y0, (0.0, 1.0), np.ones(n), jac_sparsity=False)
    assert not np.allclose(prob.jacobian(0.0, y0).toarray(), dense.jacobian(0.0, y0))


def test_sparse_with_several_sweeps():
    # 20 colours > 8 partials per sweep: three sweeps, stacked and gathered.
    n = 20
    rng = np.random.default_rng(9)
    y0, p = rng.uniform(0, 1, n), rng.uniform(0.5, 1.5, n)
    prob = ODEProblem(
        heat, y0, (0.0, 1.0), p, jac_sparsity=np.ones((n, n)), param_sparsity=np.ones((n, n))
    )
    dense = ODEProblem(heat, y0, (0.0, 1.0), p, jac_sparsity=False, param_sparsity=False)
    assert prob.jac_colors[1] == n
    np.testing.assert_allclose(
        prob.jacobian(0.1, y0).toarray(), dense.jacobian(0.1, y0), rtol=1e-14
    )
    np.testing.assert_allclose(
        prob.param_jacobian(0.1, y0).toarray(), dense.param_jacobian(0.1, y0), rtol=1e-14
    )


def test_compression_layout():
    S = as_pattern(tridiagonal(5), (5, 5))
    colors, nc = color_columns(S)
    seeds, pos = compression(S, colors, nc, 2)
    assert seeds.shape == (2, 5, 2) and seeds.sum() == 5
    rows = np.repeat(np.arange(5), np.diff(S.indptr))
    c = colors[S.indices]
    np.testing.assert_array_equal(pos, ((c // 2) * 5 + rows) * 2 + c % 2)


def test_jacobian_values_match_matrix():
    n = 100
    y0 = np.linspace(0.1, 1.0, n)
    prob = ODEProblem(heat, y0, (0.0, 1.0), np.ones(n))
    out = np.full(prob.jac_sparsity.nnz, np.nan)
    vals = prob.jacobian_values(0.0, y0, out=out)
    assert vals is out
    J = prob.jacobian(0.0, y0)  # values by colour within rows; jacobian_values by column
    J.sort_indices()
    np.testing.assert_array_equal(vals, J.data)
    with pytest.raises(ValueError, match="out must be"):
        prob.jacobian_values(0.0, y0, out=np.zeros(3))
    dense = ODEProblem(heat, y0[:10], (0.0, 1.0), np.ones(10))
    with pytest.raises(ValueError, match="jac_sparsity"):
        dense.jacobian_values(0.0, y0[:10])


@pytest.mark.parametrize("compile", [True, False])
@pytest.mark.parametrize("case", ["tridiagonal", "five_point", "random", "short_rows"])
def test_colour_order_assembly_equals_the_gather(case, compile):
    # the values of a compressed Jacobian copied row by row (colour_runs + assembler,
    # with each row's copy of K values spilling into the next rows) equal the plain
    # gather flat[pos]; the spill guard keeps the last rows' copies inside data
    rng = np.random.default_rng(1)
    if case == "tridiagonal":
        S = tridiagonal(50)
    elif case == "five_point":
        S = five_point(7, 6)
    elif case == "random":
        S = sp.random(60, 60, density=0.05, random_state=2) + sp.eye(60)
    else:  # rows of 0, 1 and 2 entries: runs of several widths, empty rows
        S = sp.csr_matrix(np.kron(np.eye(10), np.array([[1, 1], [0, 0], [0, 1]]))[:, :20])
    S = as_pattern(S, S.shape)
    colors, nc = color_columns(S)
    K = 1 << (max(nc, 1) - 1).bit_length()
    perm, runs, loose = colour_runs(S, colors, nc, K)
    assert perm is not None and runs.shape[0] > 0
    _, pos = compression(S, colors, nc, K)
    flat = rng.standard_normal(S.shape[0] * K)
    data = np.full(S.nnz, np.nan)
    nb.assembler(K, compile)(flat, pos[perm], runs, loose, data)
    np.testing.assert_array_equal(data, flat[pos[perm]])
    # the reordered pattern is the same matrix, its rows sorted by colour
    R = sp.csr_matrix((np.ones(S.nnz), S.indices[perm], S.indptr), shape=S.shape)
    assert (R != S).nnz == 0
    rows = np.repeat(np.arange(S.shape[0]), np.diff(S.indptr))
    assert np.all(np.diff(colors[R.indices])[np.diff(rows) == 0] > 0)
    # every run's rows hold colours 0 ... w-1 and stay inside data
    for i0, i1, a, w in runs:
        assert np.all(np.diff(S.indptr)[i0:i1] == w) and a == S.indptr[i0]
        assert S.indptr[i1 - 1] + K <= S.nnz
    covered = np.concatenate([np.arange(S.indptr[i0], S.indptr[i1]) for i0, i1, _, _ in runs])
    np.testing.assert_array_equal(np.sort(np.concatenate([covered, loose])), np.arange(S.nnz))


def test_colour_runs_need_one_sweep():
    S = as_pattern(tridiagonal(20), (20, 20))
    colors, nc = color_columns(S)
    perm, runs, loose = colour_runs(S, colors, nc, 2)  # 3 colours, 2 per sweep: no runs
    assert perm is None and runs.shape == (0, 4) and loose.size == 0


def test_seeds_start_on_a_cache_line():
    for n in (5, 1000, 40_000):
        S = as_pattern(tridiagonal(n), (n, n))
        colors, nc = color_columns(S)
        seeds, _ = compression(S, colors, nc, 4)
        assert seeds.ctypes.data % 64 == 0 and seeds.flags.c_contiguous
        assert seeds.shape == (1, n, 4) and seeds.sum() == n


def test_repeated_sparse_jacobians_are_independent():
    # The kernel and its seeds/positions are set up once and reused: every call must
    # still give a fresh matrix, equal to the dense Jacobian at its own point.
    n = 90
    rng = np.random.default_rng(11)
    y0, p = rng.uniform(0, 1, n), rng.uniform(0.5, 1.5, n)
    prob = ODEProblem(heat, y0, (0.0, 1.0), p)
    dense = ODEProblem(heat, y0, (0.0, 1.0), p, jac_sparsity=False)
    ya, yb = rng.uniform(0, 1, n), rng.uniform(1, 2, n)
    Ja = prob.jacobian(0.0, ya)
    Jb = prob.jacobian(0.0, yb)
    assert Ja.data is not Jb.data  # the structure is shared read-only (copy on write)
    assert not (Ja.indices.flags.writeable or Ja.indptr.flags.writeable)
    np.testing.assert_allclose(Ja.toarray(), dense.jacobian(0.0, ya), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(Jb.toarray(), dense.jacobian(0.0, yb), rtol=1e-14, atol=1e-15)
    vals = prob.jacobian_values(0.0, ya)  # in the pattern's order (sorted columns)
    Js = Ja.copy()
    Js.sort_indices()
    np.testing.assert_array_equal(Js.indices, prob.jac_sparsity.indices)
    np.testing.assert_array_equal(vals, Js.data)
    for by_colour in (False, True):
        setup = prob._sparse_setup(prob.jac_sparsity, prob.jac_colors, "sparse_jac", by_colour)
        assert setup[2].dtype == np.uint32


def test_sparse_jacobians_share_the_pattern_copy_on_write():
    # prob.jacobian() shares the pattern's index arrays (read-only) instead of copying them;
    # changing one result's structure must copy first and leave the pattern and the next
    # Jacobian intact.
    import pickle

    n = 100
    y0 = np.linspace(0.1, 1.0, n)
    prob = ODEProblem(heat, y0, (0.0, 1.0), np.ones(n))
    S = prob.jac_sparsity
    indices, indptr = S.indices.copy(), S.indptr.copy()
    J = prob.jacobian(0.0, y0)
    shared = prob.jacobian(0.0, y0).indices  # the pattern, rows by colour: one copy for all
    assert isinstance(J, sp.csr_matrix) and J.indices is shared
    with pytest.raises(ValueError, match="read-only"):
        J.indices[0] = 1
    dense = J.toarray()
    J.data[:3] = 0.0
    J.eliminate_zeros()
    assert J.nnz == S.nnz - 3 and J.indices is not shared and J.indices.flags.writeable
    np.testing.assert_array_equal(S.indices, indices)
    np.testing.assert_array_equal(S.indptr, indptr)
    J2 = prob.jacobian(0.0, y0)
    np.testing.assert_array_equal(J2.toarray(), dense)
    for method in ("sort_indices", "sum_duplicates", "prune"):
        K = prob.jacobian(0.0, y0)
        getattr(K, method)()
        assert K.indices.flags.writeable
        np.testing.assert_array_equal(K.toarray(), dense)
    K = prob.jacobian(0.0, y0)
    K.resize((n + 1, n + 1))
    assert K.shape == (n + 1, n + 1) and S.shape == (n, n)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(J2)).toarray(), dense)
    np.testing.assert_array_equal((2.0 * J2).toarray(), 2.0 * dense)
