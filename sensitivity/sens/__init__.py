"""Sensitivities of time-dependent solutions: checkpoint schedules (more to come).

:mod:`sensitivity.sens.checkpoint` plans and runs checkpointed reverse sweeps for any
time loop (binomial/Revolve, fixed interval, online, from a memory budget).
"""

from sensitivity.sens.checkpoint import (
    Action,
    CheckpointStats,
    OnlineCheckpointer,
    Schedule,
    binomial,
    binomial_cost,
    fixed_interval,
    from_budget,
    parse_bytes,
    run,
    store_all,
    validate,
)

__all__ = [
    "Action",
    "CheckpointStats",
    "OnlineCheckpointer",
    "Schedule",
    "binomial",
    "binomial_cost",
    "fixed_interval",
    "from_budget",
    "parse_bytes",
    "run",
    "store_all",
    "validate",
]
