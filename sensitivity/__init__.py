"""sensitivity: exact, fast derivatives of ODE and PDE solutions.

The public API is re-exported here explicitly; see ``__all__``. The PDE toolkit and the
checkpoint schedules are imported on demand: ``import sensitivity.pde``,
``from sensitivity.sens import checkpoint``.
"""

from importlib import import_module as _import_module

from sensitivity.ad.core import NonFiniteError, debug_nans
from sensitivity.ad.dual import Dual, similar
from sensitivity.ad.nb import RHSCompileError
from sensitivity.ad.rules import RULES, RULES_VERSION
from sensitivity.ode.problem import ODEProblem

# Imported on first use, so that a script starts faster: the integrators (~0.04 s of
# kernel definitions), the numpy-level modes, the sensitivity layer (~0.07 s) and the
# inversion layer, which pulls in scipy.optimize (about half a second). What stays eager
# registers the numba overloads of the dual types (sensitivity.ad.nb, via ODEProblem):
# they must exist before any user function that uses them compiles.
_LAZY = {
    **dict.fromkeys(
        ("derivative", "grad", "hessian", "hvp", "jacobian", "jvp", "value_and_jacobian", "vjp"),
        "sensitivity.ad.api",
    ),
    "Tape": "sensitivity.ad.tape",
    **dict.fromkeys(
        ("METHODS", "Events", "Solution", "Solver", "solve", "warmup"), "sensitivity.ode.solve"
    ),
    "AdjointResult": "sensitivity.sens.adjoint",
    "adjoint_gradient": "sensitivity.sens.adjoint",
    "gradient": "sensitivity.sens.adjoint",
    "ForwardSensitivity": "sensitivity.sens.forward",
    "SensitivitySolver": "sensitivity.sens.forward",
    "forward_sensitivity": "sensitivity.sens.forward",
    "IntegralObjective": "sensitivity.sens.objectives",
    "L2Misfit": "sensitivity.sens.objectives",
    "PointObjective": "sensitivity.sens.objectives",
    "TermError": "sensitivity.inverse.executors",
    "parallel_map": "sensitivity.inverse.executors",
    "FitResult": "sensitivity.inverse.fit",
    "fit": "sensitivity.inverse.fit",
    "AbstractObjective": "sensitivity.inverse.objective",
    "FunctionObjective": "sensitivity.inverse.objective",
    "MappedObjective": "sensitivity.inverse.objective",
    "SumObjective": "sensitivity.inverse.objective",
    "Objective": "sensitivity.inverse.ode_objective",
    "SmoothedTV": "sensitivity.inverse.regularization",
    "Tikhonov": "sensitivity.inverse.regularization",
    "l_curve": "sensitivity.inverse.regularization",
    "Bounded": "sensitivity.inverse.transforms",
    "Log": "sensitivity.inverse.transforms",
    "Transform": "sensitivity.inverse.transforms",
    "verify_gradient": "sensitivity.testing",
}


def __getattr__(name):
    if name == "testing":
        value = _import_module("sensitivity.testing")
    elif name in _LAZY:
        value = getattr(_import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'sensitivity' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0.dev0"

__all__ = [
    "AbstractObjective",
    "RHSCompileError",
    "warmup",
    "AdjointResult",
    "IntegralObjective",
    "L2Misfit",
    "Objective",
    "PointObjective",
    "adjoint_gradient",
    "gradient",
    "Events",
    "ForwardSensitivity",
    "METHODS",
    "ODEProblem",
    "SensitivitySolver",
    "Solution",
    "Solver",
    "forward_sensitivity",
    "solve",
    "Bounded",
    "Dual",
    "FitResult",
    "FunctionObjective",
    "Log",
    "MappedObjective",
    "SmoothedTV",
    "SumObjective",
    "TermError",
    "Tikhonov",
    "Transform",
    "fit",
    "l_curve",
    "parallel_map",
    "value_and_jacobian",
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
