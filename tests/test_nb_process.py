"""Compiled kernels across processes: numba's disk cache, the rule-table stamp,
and the pure-Python path under NUMBA_DISABLE_JIT=1."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RHS_MODULE = textwrap.dedent(
    """
    import numpy as np

    def lv(t, y, p, dydt):
        dydt[0] = p[0] * y[0] - p[1] * y[0] * y[1]
        dydt[1] = -p[2] * y[1] + np.tanh(p[3] * y[0]) * y[1]

    def heat(t, y, p, dydt):
        n = len(y)
        dydt[:] = 0.0
        for i in range(1, n - 1):
            dydt[i] = p[i] * (y[i + 1] - 2.0 * y[i] + y[i - 1]) - np.exp(-abs(y[i]))
    """
)

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from sensitivity.ad import rules
    if len(sys.argv) > 1 and sys.argv[1] != "--sparse":
        rules.RULES_VERSION = sys.argv[1]   # what a changed rule table bumps
        if "--mutate" in sys.argv:  # a changed rule: d tanh/dx doubled
            old = rules.RULES["tanh"]
            def d_tanh2(y, x):
                return 2.0 - 2.0 * y * y
            rules.RULES["tanh"] = rules.Rule("tanh", old.f, (d_tanh2,), old.domain)
    from sensitivity.ode.problem import ODEProblem
    from rhs_mod import heat, lv
    prob = ODEProblem(lv, [1.0, 2.0], (0.0, 1.0), [1.0, 2.0, 3.0, 0.5])
    J = prob.jacobian(0.2, prob.y0)
    Jp = prob.param_jacobian(0.2, prob.y0)
    v = prob.jvp(0.2, prob.y0, np.array([1.0, -1.0]))
    stats = {}
    for name in ("jac_kernel", "param_jac_kernel", "jvp_kernel"):
        k = getattr(prob, name)
        s = getattr(k, "stats", None)
        stats[name] = [sum(s.cache_hits.values()), sum(s.cache_misses.values())] if s else None
    out = {"J": J.tolist(), "Jp": Jp.tolist(), "v": v.tolist(), "stats": stats}
    if "--sparse" in sys.argv:  # detection (jac_cols kernels) and coloured sparse kernels
        y0 = np.linspace(0.1, 1.0, 70)
        big = ODEProblem(heat, y0, (0.0, 1.0), np.linspace(1.0, 2.0, 70))
        out["S"] = big.jacobian(0.0, y0).toarray().tolist()
        out["Sp"] = big.param_jacobian(0.0, y0).toarray().tolist()
    print(json.dumps(out))
    """
)


def _run(tmp_path, *args, env_extra=None):
    (tmp_path / "rhs_mod.py").write_text(RHS_MODULE)
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), ROOT])
    env.update(env_extra or {})
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_second_process_reuses_cache_and_stamp_invalidates(tmp_path):
    first = _run(tmp_path)
    assert all(h == 0 and m >= 1 for h, m in first["stats"].values())
    second = _run(tmp_path)
    assert all(h >= 1 and m == 0 for h, m in second["stats"].values()), second["stats"]
    assert second["J"] == first["J"] and second["Jp"] == first["Jp"]
    bumped = _run(tmp_path, "999-test")  # a new rule-table version: nothing stale is reused
    assert all(h == 0 and m >= 1 for h, m in bumped["stats"].values()), bumped["stats"]
    assert bumped["J"] == first["J"]
    # A changed rule with a new version must change the derivatives (no stale
    # compiled code anywhere, including f's own dual specialisations).
    changed = _run(tmp_path, "1000-test", "--mutate")
    J0, J1 = np.array(first["J"]), np.array(changed["J"])
    assert J1[0, 0] == J0[0, 0] and J1[0, 1] == J0[0, 1]  # row 0 has no tanh
    assert not np.allclose(J1[1], J0[1])  # row 1 differentiates tanh(p3 * y0) * y1


@pytest.mark.slow
def test_kernels_run_with_jit_disabled(tmp_path):
    compiled = _run(tmp_path, "--sparse")
    plain = _run(tmp_path, "--sparse", env_extra={"NUMBA_DISABLE_JIT": "1"})
    assert all(s is None for s in plain["stats"].values())  # really not compiled
    for key in ("J", "Jp", "v", "S", "Sp"):
        a, b = np.array(compiled[key]), np.array(plain[key])
        assert a.shape == b.shape and np.abs(a).sum() > 0
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
