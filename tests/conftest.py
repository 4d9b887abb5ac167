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
