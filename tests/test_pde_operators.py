"""Grids, operators and boundary conditions: convergence, sparsity, conservation."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sensitivity.pde import boundary as bcs
from sensitivity.pde.grids import Grid1D, Grid2D, RadialGrid1D
from sensitivity.pde.mol import diffusion_system
from sensitivity.pde.operators import (
    flux_divergence,
    flux_divergence_pattern,
    gradient,
    gradient_pattern,
    laplacian,
    laplacian_pattern,
)


def complex_step_jacobian(f, x):
    """Dense Jacobian of f at x, column by column, exact to round-off."""
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size, dtype=complex)
        e[j] = 1e-30j
        cols.append(np.imag(np.asarray(f(x + e)).ravel()) / 1e-30)
    return np.array(cols).T


def slope(hs, errs):
    return np.polyfit(np.log(hs), np.log(errs), 1)[0]


@pytest.mark.parametrize("order", [2, 4])
def test_laplacian_convergence_order_1d_2d(order):
    e1, e2, hs = [], [], []
    for n in (15, 31, 63):
        h = 1.0 / (n + 1)
        x = h * np.arange(1, n + 1)
        e1.append(
            np.abs(laplacian(np.sin(np.pi * x), h, order) + np.pi**2 * np.sin(np.pi * x)).max()
        )
        X, Z = np.meshgrid(x, x, indexing="ij")
        u = np.sin(np.pi * X) * np.sin(2 * np.pi * Z)
        e2.append(np.abs(laplacian(u, (h, h), order) + 5 * np.pi**2 * u).max())
        hs.append(h)
    assert abs(slope(hs, e1) - order) < 0.3, e1
    assert abs(slope(hs, e2) - order) < 0.3, e2


def _k(x):
    # k' = 0 at the ends: a Neumann flux uses the boundary cell's k, which is
    # then second-order accurate at the face (first order if k' != 0 there).
    return 1.0 + 0.5 * np.cos(2 * np.pi * x)


def _u(x):
    return np.sin(np.pi * x) + x


def _du(x):
    return np.pi * np.cos(np.pi * x) + 1.0


def _source(x):  # -(k u')'
    k, dk = _k(x), -np.pi * np.sin(2 * np.pi * x)
    return -(dk * _du(x) - k * np.pi**2 * np.sin(np.pi * x))


def _bc(kind, side):
    x = 0.0 if side == "left" else 1.0
    sign = -1.0 if side == "left" else 1.0  # outward normal
    if kind == "dirichlet":
        return bcs.Dirichlet(_u(x))
    if kind == "neumann":
        return bcs.Neumann(sign * _du(x))
    return bcs.Flux(sign * _k(x) * _du(x))  # inflow = k du/dn


def _steady_solve(grid, k, f, left, right):
    """Solve div(k grad u) = -f with the operator's (affine) Jacobian."""
    op = lambda u: flux_divergence(u, k, grid, left, right)  # noqa: E731
    A = complex_step_jacobian(op, np.zeros(grid.n))
    b = op(np.zeros(grid.n))
    return np.linalg.solve(A, -f - b)


@pytest.mark.parametrize(
    "left, right",
    [("dirichlet", "dirichlet"), ("neumann", "dirichlet"), ("flux", "dirichlet"),
     ("dirichlet", "neumann"), ("dirichlet", "flux")],
)  # fmt: skip
def test_flux_divergence_manufactured_solution_order_2(left, right):
    hs, errs = [], []
    for n in (20, 40, 80):
        g = Grid1D(0.0, 1.0, n)
        x = g.centres
        u = _steady_solve(g, _k(x), _source(x), _bc(left, "left"), _bc(right, "right"))
        errs.append(np.abs(u - _u(x)).max())
        hs.append(g.h)
    assert slope(hs, errs) > 1.8, errs


def test_radial_operator_exact_for_log_and_second_order():
    g = RadialGrid1D(0.1, 100.0, 30)
    r = g.centres
    # steady radial flow u = a + b ln r is reproduced to round-off
    ends = bcs.Dirichlet(1.0 + 0.5 * np.log(0.1)), bcs.Dirichlet(1.0 + 0.5 * np.log(100.0))
    u = _steady_solve(g, np.full(g.n, 2.0), np.zeros(g.n), *ends)
    np.testing.assert_allclose(u, 1.0 + 0.5 * np.log(r), rtol=1e-11)
    # and a prescribed inflow at the well gives the Thiem solution: q = -T r du/dr
    q, T = 3.0, 2.0
    u = _steady_solve(g, np.full(g.n, T), np.zeros(g.n), bcs.Flux(q), bcs.Dirichlet(0.0))
    np.testing.assert_allclose(u, q / T * np.log(100.0 / r), rtol=1e-11)
    # u = r^2 with T = 1 + r/200: -(1/r)(r T u')' = -(4 T + 2 r T')
    hs, errs = [], []
    for n in (20, 40, 80):
        g = RadialGrid1D(1.0, 10.0, n)
        r = g.centres
        T = 1 + r / 200
        f = -(4 * T + 2 * r / 200)
        u = _steady_solve(g, T, f, bcs.Dirichlet(1.0), bcs.Dirichlet(100.0))
        errs.append(np.abs(u - r**2).max())
        hs.append(np.log(10.0) / n)
    assert slope(hs, errs) > 1.8, errs


@pytest.mark.parametrize("kind", ["dirichlet", "neumann", "flux"])
@pytest.mark.parametrize("grid", [Grid1D(0.0, 2.0, 9), RadialGrid1D(0.05, 50.0, 9)])
def test_patterns_equal_computed_jacobian_structure(kind, grid, rng):
    u = rng.standard_normal(grid.n)
    k = rng.uniform(0.5, 2.0, grid.n)
    left, right = bcs.BC(kind, 0.7), bcs.Dirichlet(0.3)
    Ju = complex_step_jacobian(lambda v: flux_divergence(v, k, grid, left, right), u)
    Jk = complex_step_jacobian(lambda c: flux_divergence(u, c, grid, left, right), k)
    P = flux_divergence_pattern(grid.n).toarray() != 0
    np.testing.assert_array_equal(Ju != 0, P)
    np.testing.assert_array_equal(Jk != 0, P)
    if kind != "flux":
        Jg = complex_step_jacobian(lambda v: gradient(v, grid, left, right), u)
        P = gradient_pattern(grid.n, left, right).toarray() != 0
        np.testing.assert_array_equal(Jg != 0, P)


@pytest.mark.parametrize("order", [2, 4])
@pytest.mark.parametrize("shape", [(11,), (6, 5)])
def test_laplacian_pattern_equals_jacobian_structure(order, shape, rng):
    u = rng.standard_normal(shape)
    sp = 0.3 if len(shape) == 1 else (0.3, 0.2)
    J = complex_step_jacobian(lambda v: laplacian(v.reshape(shape), sp, order), u.ravel())
    np.testing.assert_array_equal(J != 0, laplacian_pattern(shape, order).toarray() != 0)


@pytest.mark.parametrize("grid", [Grid1D(-1.0, 3.0, 12), RadialGrid1D(0.1, 20.0, 12)])
def test_flux_boundaries_conserve_mass(grid, rng):
    u = rng.standard_normal(grid.n)
    k = rng.uniform(0.5, 2.0, grid.n)
    d = flux_divergence(u, k, grid, bcs.Flux(1.25), bcs.Flux(-0.5))
    assert np.sum(grid.volume * d) == pytest.approx(0.75, rel=1e-12)
    # Neumann zero at both ends: no mass enters
    d = flux_divergence(u, k, grid, bcs.Neumann(0.0), bcs.Neumann(0.0))
    assert abs(np.sum(grid.volume * d)) < 1e-12 * np.sum(grid.volume * np.abs(d))


def test_gradient_is_exact_for_linear_functions():
    g = Grid1D(0.0, 2.0, 7)
    u = 3.0 * g.centres + 1.0
    np.testing.assert_allclose(
        gradient(u, g, bcs.Dirichlet(1.0), bcs.Dirichlet(7.0)), 3.0, rtol=1e-13
    )
    np.testing.assert_allclose(gradient(u, g, bcs.Neumann(-3.0), bcs.Neumann(3.0)), 3.0)


def test_grids_geometry():
    g = RadialGrid1D(0.1, 100.0, 40)
    f = g.faces
    np.testing.assert_allclose(f[1:] / f[:-1], f[1] / f[0])
    assert np.sum(g.volume) == pytest.approx((100.0**2 - 0.1**2) / 2)
    np.testing.assert_allclose(g.res_lo + g.res_hi, np.log(f[1:] / f[:-1]))
    u = Grid1D(0.0, 1.0, 4)
    np.testing.assert_allclose(u.centres, [0.125, 0.375, 0.625, 0.875])
    g2 = Grid2D((3, 4), (10.0, 5.0))
    assert g2.extent == (20.0, 15.0) and g2.z[-1] == 15.0


def test_mol_system_matches_operator_and_patterns(rng):
    g = Grid1D(0.0, 1.0, 16)
    k = 1 + 0.5 * np.sin(2 * np.pi * g.centres)
    u0 = np.sin(np.pi * g.centres)
    cap = rng.uniform(1.0, 2.0, g.n)
    sys_ = diffusion_system(g, k, u0, (0.0, 0.1), capacity=cap)
    dydt = np.empty(g.n)
    sys_.f(0.0, u0, k, dydt)  # compiled closure, as an ODEProblem calls it
    ref = flux_divergence(u0, k, g, bcs.Dirichlet(0.0), bcs.Dirichlet(0.0)) / cap
    np.testing.assert_allclose(dydt, ref, rtol=1e-14)
    np.testing.assert_allclose(sys_.rhs(0.0, u0), ref, rtol=1e-14)
    Jy = complex_step_jacobian(lambda y: sys_.rhs(0.0, y), u0)
    Jp = complex_step_jacobian(lambda p: sys_.rhs(0.0, u0, p), k)
    np.testing.assert_array_equal(Jy != 0, sys_.jac_sparsity.toarray() != 0)
    np.testing.assert_array_equal(Jp != 0, sys_.param_sparsity.toarray() != 0)


def test_mol_system_to_ode_problem():
    problem_mod = pytest.importorskip("sensitivity.ode.problem")
    g = RadialGrid1D(0.1, 100.0, 20)
    sys_ = diffusion_system(g, np.full(g.n, 2.0), np.zeros(g.n), (0.0, 1.0),
                            left=bcs.Flux(1.0), right=bcs.Dirichlet(0.0))  # fmt: skip
    prob = sys_.to_problem()
    assert isinstance(prob, problem_mod.ODEProblem)
    y = np.linspace(0, 1, g.n)
    np.testing.assert_allclose(prob.rhs(0.0, y), sys_.rhs(0.0, y), rtol=1e-13)
    J = prob.jacobian(0.0, y)
    J = J.toarray() if hasattr(J, "toarray") else J
    Jcs = complex_step_jacobian(lambda v: sys_.rhs(0.0, v), y)
    np.testing.assert_allclose(J, Jcs, rtol=1e-12, atol=1e-14)


def test_bad_input():
    g = Grid1D(0.0, 1.0, 5)
    with pytest.raises(ValueError, match="BC kind"):
        bcs.BC("robin", 1.0)
    with pytest.raises(TypeError, match="BC"):
        flux_divergence(np.ones(5), np.ones(5), g, "dirichlet", bcs.Dirichlet())
    with pytest.raises(ValueError, match="u must have shape"):
        flux_divergence(np.ones(4), np.ones(5), g, bcs.Dirichlet(), bcs.Dirichlet())
    with pytest.raises(ValueError, match="k must be finite and positive"):
        diffusion_system(g, -np.ones(5), np.ones(5), (0, 1))
    with pytest.raises(ValueError, match="r_inner"):
        RadialGrid1D(0.0, 1.0, 3)
    with pytest.raises(ValueError, match="order"):
        laplacian(np.ones(4), 0.1, order=6)
    with pytest.raises(ValueError, match="Flux"):
        gradient(np.ones(5), g, bcs.Flux(1.0), bcs.Dirichlet())


def test_operators_run_without_jit():
    code = textwrap.dedent(
        """
        import numpy as np
        import numba
        assert numba.config.DISABLE_JIT
        from sensitivity.pde import boundary as bcs
        from sensitivity.pde.grids import RadialGrid1D
        from sensitivity.pde.operators import flux_divergence, gradient, laplacian
        from sensitivity.pde.mol import diffusion_system
        g = RadialGrid1D(0.1, 10.0, 6)
        d = flux_divergence(np.ones(6), np.ones(6), g, bcs.Flux(1.0), bcs.Dirichlet(0.0))
        lap = laplacian(np.ones((4, 3)), (1.0, 1.0), order=4) + laplacian(np.ones(3), 1.0)[0]
        gr = gradient(np.ones(6), g, bcs.Dirichlet(0.0), bcs.Neumann(1.0))
        s = diffusion_system(g, np.ones(6), np.ones(6), (0.0, 1.0))
        dydt = np.empty(6)
        s.f(0.0, s.y0, s.p, dydt)
        print(np.isfinite(d).all() and np.isfinite(gr).all(), lap.shape == (4, 3))
        """
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_mol_diffusion_solves_against_matrix_exponential():
    pytest.importorskip("sensitivity.ode.problem")
    from scipy.linalg import expm

    from sensitivity.ode.solve import solve

    g = Grid1D(0.0, 1.0, 64)
    x = g.centres
    k = 1 + 0.5 * np.sin(2 * np.pi * x)
    u0 = np.sin(np.pi * x) + 0.5 * np.sin(3 * np.pi * x)
    sys_ = diffusion_system(g, k, u0, (0.0, 0.05))
    prob = sys_.to_problem()
    ts = np.array([0.01, 0.05])
    sol = solve(prob, method="BDF", t_eval=ts, rtol=1e-8, atol=1e-10)
    assert sol.success, sol.message
    A = complex_step_jacobian(lambda y: sys_.rhs(0.0, y), u0)  # linear: y' = A y
    for i, t in enumerate(ts):
        np.testing.assert_allclose(sol.y[i], expm(A * t) @ u0, rtol=0, atol=1e-6)
