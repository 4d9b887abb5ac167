"""The stiff solvers' patterned paths, sensitivities, adjoints and FWI with numba off.

Every kernel must also run as plain Python (``NUMBA_DISABLE_JIT=1`` for debugging and
coverage, ``SENSITIVITY_NO_NUMBA=1``): a subprocess computes a banded-LU BDF solve, BDF and
ESDIRK forward sensitivities and the BDF discrete adjoint of a small diffusion problem with
the patterned paths forced, a sparse Jacobian and a small store-all FWI gradient, and the
results must equal the compiled ones in this process.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import sensitivity as sn
from sensitivity.ode import linsolve
from sensitivity.pde.fwi import camembert
from tests.rhs_suite import heat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 12

CODE = """
import json, sys
import numpy as np, scipy.sparse as sp
sys.path.insert(0, {root!r})
from sensitivity.ode import linsolve
from tests.test_numba_off import compute
linsolve.DENSE_LU_MAX = 0  # the patterned (banded/sparse LU) paths
print(json.dumps(compute()))
"""


def compute():
    """The quantities both runs compare, as lists (JSON)."""
    x = (np.arange(N) + 0.5) / N
    pattern = sp.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(N, N), format="csr")
    prob = sn.ODEProblem(heat, np.sin(np.pi * x), (0.0, 0.05), 1.0 + 0.5 * x,
                         jac_sparsity=pattern, param_sparsity=pattern)  # fmt: skip
    ts = np.array([0.01, 0.05])
    out = {"solve": sn.solve(prob, "BDF", ts, 1e-8, 1e-10).y.tolist()}
    for method in ("BDF", "ESDIRK"):
        fs = sn.forward_sensitivity(prob, t_eval=ts, method=method, rtol=1e-8, atol=1e-10)
        out[f"sens_{method}"] = fs.dy_dp.tolist()
    data = np.zeros((2, 3))
    obj = sn.L2Misfit(ts, data, observe=[2, 6, 9])
    g = sn.adjoint_gradient(prob, obj, method="BDF", rtol=1e-8, atol=1e-10)
    out["adjoint"] = g.grad_p.tolist() + g.grad_y0.tolist()
    # the sparse Jacobian's values copied by colour runs (a tridiagonal pattern) ...
    out["sparse_jacobian"] = prob.jacobian(0.02, np.cos(x)).toarray().tolist()
    # ... and the store-all FWI gradient, its images written in blocks (aligned store)
    problem, v_true, v0 = camembert(shape=(21, 21), spacing=(50.0, 50.0), nbl=5, n_receivers=5)
    shot, q = problem.shot(0), problem.wavelet[:, None]
    d_obs = shot.forward(problem.extend(v_true) ** -2.0, q)
    out["fwi_gradient"] = shot.gradient(problem.extend(v0) ** -2.0, q, d_obs).grad.tolist()
    return out


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.parametrize("switch", ["NUMBA_DISABLE_JIT", "SENSITIVITY_NO_NUMBA"])
def test_patterned_paths_match_compiled(switch, monkeypatch):
    env = dict(os.environ, **{switch: "1"})
    proc = subprocess.run([sys.executable, "-c", CODE.format(root=ROOT)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain = json.loads(proc.stdout.strip().splitlines()[-1])
    monkeypatch.setattr(linsolve, "DENSE_LU_MAX", 0)
    compiled = compute()
    assert plain.keys() == compiled.keys()
    for key in compiled:
        np.testing.assert_allclose(plain[key], compiled[key], rtol=1e-11, atol=1e-13,
                                   err_msg=key)  # fmt: skip
