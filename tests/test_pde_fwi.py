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
