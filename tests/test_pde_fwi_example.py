"""The Camembert FWI example runs (quick mode, ~8 s) and meets its targets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "geophysics" / "fwi_camembert" / "fwi_camembert.py"


def test_fwi_camembert_quick(tmp_path):
    pytest.importorskip("matplotlib")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", "--outdir", str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    gd, lb = summary["gradient_descent"], summary["lbfgsb"]
    assert len(gd) == 6 and gd[0] == lb[0]
    assert gd[-1] <= 0.25 * gd[0]  # the target
    assert min(lb) < gd[-1]  # L-BFGS-B does better on the same budget
    assert summary["lbfgsb_evaluations"] <= 6
    for name in ("models.png", "gradient.png", "shot_gather.png", "objective.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["models.png", "gradient.png", "shot_gather.png", "objective.png"]
    )  # nothing else written
