"""FWI shot sums through executors: serial, concurrent.futures, Dask."""

import numpy as np
import pytest

from sensitivity.pde.fwi import camembert


@pytest.fixture(scope="module")
def tiny():
    problem, v_true, v0 = camembert(
        shape=(21, 21), spacing=(50.0, 50.0), nbl=8, t_end=0.5, n_sources=3, n_receivers=11
    )
    return problem, v0, problem.modelled_data(v_true)


def test_process_pool_executor_matches_serial(tiny):
    from concurrent.futures import ProcessPoolExecutor

    problem, v0, d_obs = tiny
    ref = problem.misfit_gradient(v0, d_obs)
    with ProcessPoolExecutor(2) as ex:
        got = problem.misfit_gradient(v0, d_obs, executor=ex)
    assert got[0] == ref[0] and np.array_equal(got[1], ref[1])


def test_memory_budget_per_shot_same_gradient(tiny):
    problem, v0, d_obs = tiny
    ref = problem.misfit_gradient(v0, d_obs)
    shot = problem.shot(0)
    budget = shot.working_bytes() + 6 * 2 * shot.wavefield_bytes
    got = problem.misfit_gradient(v0, d_obs, memory_budget=budget)
    assert np.array_equal(got[1], ref[1])
    assert all(s["schedule"].startswith("binomial") for s in got[2])
    assert all(s["recompute_factor"] > 1 for s in got[2])


def test_dask_local_cluster_matches_serial(tiny):
    distributed = pytest.importorskip("distributed")
    problem, v0, d_obs = tiny
    ref = problem.misfit_gradient(v0, d_obs)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        got = problem.misfit_gradient(v0, d_obs, executor=client)
    assert got[0] == ref[0] and np.array_equal(got[1], ref[1])


def test_objective_for_the_inversion_layer(tiny, rng):
    from sensitivity.inverse.fit import fit
    from sensitivity.testing import dot_product_test

    problem, v0, d_obs = tiny
    obj = problem.objective(d_obs)
    f, g = obj.fun_and_jac(v0.ravel())
    ref_f, ref_g, _ = problem.misfit_gradient(v0, d_obs)
    assert f == pytest.approx(ref_f, rel=1e-13)
    np.testing.assert_allclose(g, ref_g.ravel(), rtol=1e-12, atol=1e-12 * np.abs(ref_g).max())
    J = obj.residual_jac(v0.ravel())
    res = dot_product_test(J.matvec, J.rmatvec, shape_in=(v0.size,), seed=2)
    assert res.passed and res.rel_error < 1e-11
    # Gauss-Newton product is J^T J v
    v = rng.standard_normal(v0.size)
    np.testing.assert_allclose(obj.hessp(v0.ravel(), v), J.rmatvec(J.matvec(v)), rtol=1e-12)
    # misfits ~1e-3 and gradients ~1e-8 (s/m): switch off scipy's absolute stops
    out = fit(obj, v0.ravel(), method="L-BFGS-B", bounds=(2000.0, 3500.0), progress=False,
              maxiter=6, gtol=0.0, ftol=0.0)  # fmt: skip
    assert obj.fun(out.x) < 0.05 * f, (obj.fun(out.x), f)  # measured 0.006
