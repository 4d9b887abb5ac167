"""Run the benchmarks and keep what they print for the documentation.

Each benchmark runs in its own process (so one's numba compilations do not slow the next)
and its standard output is written to ``benchmarks/results/<name>.txt`` under a header with
the date, the machine and the command. The documentation's benchmark page includes these
files verbatim, so the tables there are always ones a benchmark printed, never retyped.

Run: ``python benchmarks/run_all.py [name ...] [--quick]`` (default: all of them).
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")

# name -> (arguments of the full run, of the quick run); the order is the documentation's
BENCHMARKS = {
    "ad_numpy": ([], []),
    "nb_duals": ([], ["--quick"]),
    "ode_solve": ([], ["--quick"]),
    "forward_sens": ([], ["--quick"]),
    "adjoint_scaling": ([], []),
    "crossover": ([], ["--quick"]),
    "fit": ([], []),
    "fwi": ([], ["--repeats", "1"]),
}


def run(name, quick):
    """Run one benchmark; return its exit code after writing its output."""
    cmd = [sys.executable, os.path.join(HERE, f"{name}.py"), *BENCHMARKS[name][quick]]
    start = datetime.datetime.now(datetime.timezone.utc)
    root = os.path.dirname(HERE)
    # the benchmarks import the checkout's package, installed or not
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)
    minutes = (datetime.datetime.now(datetime.timezone.utc) - start).total_seconds() / 60
    command = " ".join([f"benchmarks/{name}.py", *BENCHMARKS[name][quick]])
    header = (
        f"# {command}, run {start:%Y-%m-%d %H:%M} UTC "
        f"({minutes:.1f} min)\n# {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; shared machine: "
        "compare ratios, not absolute times\n"
    )
    if proc.returncode != 0:
        print(f"{name}: FAILED (exit {proc.returncode})\n{proc.stderr[-2000:]}", file=sys.stderr)
        return proc.returncode
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.txt"), "w") as fh:
        fh.write(header + proc.stdout)
    print(f"{name}: {minutes:.1f} min -> benchmarks/results/{name}.txt")
    return 0


def main(argv):
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("--")] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    failed = [n for n in names if run(n, quick) != 0]
    if failed:
        raise SystemExit(f"failed: {failed}")


if __name__ == "__main__":
    main(sys.argv[1:])
