"""One status vocabulary and one result type for every exact solver (hindsight oracle, knapsack).

A result never claims more than the solver proved: `bound` is a proven upper bound on the optimum
(the solver's own bound, or the trivial one when the solver proved none), never the incumbent,
and `optimal` means the solver proved it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from formulations.requests import ValidationError


class Status(StrEnum):
    """How an exact solve ended (a str, so it prints and compares as its value)."""

    OPTIMAL = "optimal"  # proven: objective == bound
    FEASIBLE = "feasible"  # stopped before a proof for another reason (e.g. the solver gave up): objective <= bound
    TIMEOUT = "timeout"  # the time limit ran out: the best solution found (or none) and the proven bound
    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM stopped it: the best solution found (or none) and the proven bound
    INFEASIBLE = "infeasible"  # proven to have no solution (only with a side constraint such as min_attainment)
    SKIPPED = "skipped"  # not run: no time was left for this phase (e.g. a secondary objective)

    @property
    def stopped_early(self) -> bool:
        return self in (Status.TIMEOUT, Status.INTERRUPTED)

    @property
    def meaning(self) -> str:
        """One line for people reading a CLI report."""
        return _MEANINGS[self]


_MEANINGS = {
    Status.OPTIMAL: "proven optimal",
    Status.FEASIBLE: "stopped before a proof: best found, proven bound",
    Status.TIMEOUT: "time limit reached: best found, proven bound",
    Status.INTERRUPTED: "interrupted: best found, proven bound",
    Status.INFEASIBLE: "proven infeasible",
    Status.SKIPPED: "not optimized: no time left",
}


def check_time_limit(time_limit: float, what: str = "time_limit") -> float:
    """A solver time limit must be a finite number of seconds > 0 (one-line error otherwise)."""
    if isinstance(time_limit, bool) or not isinstance(time_limit, int | float) or not math.isfinite(time_limit) \
            or time_limit <= 0:
        raise ValidationError(f"{what}={time_limit!r}: must be a finite number of seconds > 0")
    return float(time_limit)


@dataclass(frozen=True)
class SolverResult:
    """`objective`: value of the best solution found (None: none found); `bound`: proven upper
    bound on the optimum of a maximization (== objective when optimal)."""

    status: Status
    objective: float | None
    bound: float
    seconds: float

    def __post_init__(self) -> None:
        if self.objective is not None and self.bound < self.objective - 1e-9:
            raise AssertionError(f"bound {self.bound} below the solution found ({self.objective})")
        if self.status == Status.OPTIMAL and (self.objective is None or self.bound > self.objective + 1e-9):
            raise AssertionError(f"optimal with objective {self.objective} and bound {self.bound}")

    @property
    def optimal(self) -> bool:
        return self.status == Status.OPTIMAL

    @property
    def gap(self) -> float | None:
        """(bound - objective) / bound: the optimum is at most this fraction above the solution found."""
        if self.objective is None:
            return None
        return (self.bound - self.objective) / self.bound if self.bound > 0 else 0.0
