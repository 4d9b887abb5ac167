import os

import numpy as np
import pytest
from hypothesis import settings

# CI runs the property tests derandomized, so a red run can be reproduced.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(20261126)


@pytest.fixture
def patterned_lu(monkeypatch):
    """Small problems with a sparsity pattern take the patterned LU paths.

    Narrow bands run the compiled banded LU at every size; wide patterns run compiled
    with a dense LU up to ``linsolve.DENSE_LU_MAX`` and with ``splu`` above (compile=False:
    LAPACK's banded LU or ``splu``); the tests of those paths use test-sized problems, so
    they lower the threshold.
    """
    from sensitivity.ode import linsolve

    monkeypatch.setattr(linsolve, "DENSE_LU_MAX", 0)
