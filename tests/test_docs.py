"""The documentation builds with warnings as errors (issue 9).

The gallery is rendered without running the examples (``plot_gallery=0``): their quick
modes run in their own tests. Every benchmark result the docs include must exist, so a
benchmark dropped from ``benchmarks/run_all.py`` cannot leave a dangling page.
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_pages_point_at_results_and_runner():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    text = "".join(p.read_text() for p in (ROOT / "docs").rglob("*.rst"))
    included = set(re.findall(r"benchmarks/results/(\w+)\.txt", text))
    assert included, "no benchmark results are included in the docs"
    missing = included - set(run_all.BENCHMARKS)
    assert not missing, f"docs include results that run_all.py does not produce: {missing}"
    for name in included:
        assert (ROOT / "benchmarks" / f"{name}.py").is_file(), name
        assert (ROOT / "benchmarks" / "results" / f"{name}.txt").is_file(), name


@pytest.mark.slow
@pytest.mark.ci
def test_sphinx_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    pytest.importorskip("sphinx_gallery")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-D", "plot_gallery=0", "-d", str(tmp_path / "doctrees"),
           str(ROOT / "docs"), str(tmp_path / "html")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "html" / "benchmarks.html").is_file()
    assert (tmp_path / "html" / "auto_examples" / "index.html").is_file()
    # every example is in the gallery (a folder without GALLERY_HEADER.rst is skipped
    # silently, and a script that calls sys.exit ends a full build without an error)
    examples = sorted(p.name for p in (ROOT / "examples" / "geophysics").iterdir() if p.is_dir()
                      and (p / f"{p.name}.py").is_file())  # fmt: skip
    assert len(examples) >= 4, examples
    for name in examples:
        assert (tmp_path / "html" / "auto_examples" / name / f"{name}.html").is_file(), name
        script = (ROOT / "examples" / "geophysics" / name / f"{name}.py").read_text()
        assert "sys.exit(0" not in script and "SystemExit(0" not in script, name


def test_getting_started_code_runs(capsys):
    """The getting-started page's code blocks run in order, as a new user would paste them."""
    text = (ROOT / "docs" / "getting_started.rst").read_text()
    blocks = re.findall(r".. code-block:: python\n\n((?:    .*\n|\n)+)", text)
    assert len(blocks) >= 5
    code = "\n".join("\n".join(line[4:] for line in b.splitlines()) for b in blocks)
    namespace = {}
    exec(compile(code, "getting_started.rst", "exec"), namespace)
    fitted = namespace["result"]
    # the fit recovers the parameters the data were made with, within 4 standard errors
    truth = np.array([1.5, 1.0, 3.0, 1.0])
    assert np.all(np.abs(fitted.x - truth) < 4.0 * fitted.stderr)
    # the adjoint gradient agrees with central differences of the misfit
    prob, obj = namespace["prob"], namespace["sn"].L2Misfit(namespace["t_obs"], namespace["data"])
    sn = namespace["sn"]
    res = namespace["res"]

    def value(p):
        q = sn.ODEProblem(prob.f, prob.y0, prob.t_span, p)
        return sn.adjoint_gradient(q, obj).value

    h = 1e-6
    fd = [(value(prob.p + h * e) - value(prob.p - h * e)) / (2 * h) for e in np.eye(4)]
    assert np.allclose(res.grad_p, fd, rtol=1e-4, atol=1e-6)
