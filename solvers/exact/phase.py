"""What one backend run returns to `solvers.exact.solve` (the same for CP-SAT, CBC and HiGHS)."""

from __future__ import annotations

from typing import NamedTuple

from solvers.interrupt import StopToken
from solvers.result import Status


class Phase(NamedTuple):
    """One solver run: `values` of the best solution found (None: none), `bound` a proven upper
    bound on this run's objective (None: the solver proved none, e.g. stopped during presolve)."""

    status: Status
    values: list[int] | None
    bound: float | None


def stopped_status(stop: StopToken) -> Status:
    """A run that ended before a proof: interrupted if a signal asked for it, else its time ran out."""
    return Status.INTERRUPTED if stop.requested else Status.TIMEOUT
