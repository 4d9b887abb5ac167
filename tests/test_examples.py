"""The examples run and check themselves."""

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_demo_verifies_its_derivatives(capsys):
    runpy.run_path(str(EXAMPLES / "demo_derivatives.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip().endswith("verified")
    assert "Taylor remainder rates" in out
