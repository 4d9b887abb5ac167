"""sensitivity: exact, fast derivatives of ODE and PDE solutions.

The public API is re-exported here explicitly; see ``__all__``. The PDE toolkit and the
checkpoint schedules are imported on demand: ``import sensitivity.pde``,
``from sensitivity.sens import checkpoint``.
"""

from sensitivity import testing
from sensitivity.ad.api import (
    derivative,
    grad,
    hessian,
    hvp,
    jacobian,
    jvp,
    value_and_jacobian,
    vjp,
)
from sensitivity.ad.core import NonFiniteError, debug_nans
from sensitivity.ad.dual import Dual, similar
from sensitivity.ad.nb import RHSCompileError
from sensitivity.ad.rules import RULES, RULES_VERSION
from sensitivity.ad.tape import Tape
from sensitivity.inverse.executors import TermError, parallel_map
from sensitivity.inverse.fit import FitResult, fit
from sensitivity.inverse.objective import (
    AbstractObjective,
    FunctionObjective,
    MappedObjective,
    SumObjective,
)
from sensitivity.inverse.ode_objective import Objective
from sensitivity.inverse.regularization import SmoothedTV, Tikhonov, l_curve
from sensitivity.inverse.transforms import Bounded, Log, Transform
from sensitivity.ode.problem import ODEProblem
from sensitivity.ode.solve import METHODS, Events, Solution, Solver, solve, warmup
from sensitivity.sens.adjoint import AdjointResult, adjoint_gradient, gradient
from sensitivity.sens.forward import ForwardSensitivity, SensitivitySolver, forward_sensitivity
from sensitivity.sens.objectives import IntegralObjective, L2Misfit, PointObjective
from sensitivity.testing import verify_gradient

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
