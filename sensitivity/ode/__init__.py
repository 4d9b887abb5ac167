"""ODE problems and their integrators."""

from sensitivity.ode.problem import ODEProblem

__all__ = ["ODEProblem"]
