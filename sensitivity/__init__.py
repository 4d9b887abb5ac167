"""sensitivity: exact, fast derivatives of ODE and PDE solutions.

The public API is re-exported here explicitly; see ``__all__``.
"""

from sensitivity.ad.core import NonFiniteError, debug_nans
from sensitivity.ad.rules import RULES, RULES_VERSION

__version__ = "0.1.0.dev0"

__all__ = [
    "NonFiniteError",
    "RULES",
    "RULES_VERSION",
    "debug_nans",
]
