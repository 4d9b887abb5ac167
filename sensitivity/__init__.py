"""sensitivity: exact, fast derivatives of ODE and PDE solutions.

The public API is re-exported here explicitly; see ``__all__``.
"""

from sensitivity import testing
from sensitivity.ad.api import derivative, grad, hessian, hvp, jacobian, jvp, vjp
from sensitivity.ad.core import NonFiniteError, debug_nans
from sensitivity.ad.dual import Dual, similar
from sensitivity.ad.rules import RULES, RULES_VERSION
from sensitivity.ad.tape import Tape
from sensitivity.testing import verify_gradient

__version__ = "0.1.0.dev0"

__all__ = [
    "Dual",
    "NonFiniteError",
    "RULES",
    "RULES_VERSION",
    "Tape",
    "debug_nans",
    "derivative",
    "grad",
    "hessian",
    "hvp",
    "jacobian",
    "jvp",
    "similar",
    "testing",
    "verify_gradient",
    "vjp",
]
