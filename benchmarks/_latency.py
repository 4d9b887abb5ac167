"""The part of a first call that no numba library can remove, for the latency figures.

Importing numpy and numba and running one cached one-line kernel in a new process: numba's
import plus the registry set-up of its first compile or cache load (which imports
scipy.linalg through numba's linear algebra). The first-call targets of issues 3 and 4
(<= 0.5 s with the cache) are measured beside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

FLOOR_MODULE = """
import numba


@numba.njit(cache=True)
def first(x):
    return x[0] + 1.0
"""

FLOOR = """
import time; t0 = time.perf_counter()
import numpy as np
import floor_module
floor_module.first(np.ones(2))
print(time.perf_counter() - t0)
"""


def seconds(code, env, cwd):
    """Run ``python -c code`` in a new process; the float on its last line of output."""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )
    out.check_returncode()
    return float(out.stdout.strip().splitlines()[-1])


def fresh_and_cached(code, env, cwd):
    """``(first, best of three more)`` seconds of ``code`` in new processes sharing ``env``'s
    numba cache: the first run compiles into it, the others load from it."""
    times = [seconds(code, env, cwd) for _ in range(4)]
    return times[0], min(times[1:])


def numba_floor(env=None):
    """Seconds for numpy + numba + one cached one-line kernel in a new process: the part of
    any numba library's first call that the library cannot remove (numba's import and the
    registry set-up of its first compile or cache load, which imports scipy.linalg)."""
    env = dict(os.environ) if env is None else env
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "floor_module.py"), "w") as fh:
            fh.write(FLOOR_MODULE)
        times = [seconds(FLOOR, env, tmp) for _ in range(3)]  # the first writes the cache
        return min(times[1:])
