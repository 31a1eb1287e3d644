"""What an exact knapsack solver returns: the shared `SolverResult` plus the chosen items."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from solvers.result import SolverResult


@dataclass(frozen=True)
class KnapsackResult(SolverResult):
    """`objective` is the value of `taken` (recomputed from the problem's real values; a knapsack
    always has a solution: take nothing); `bound` the proven upper bound on the optimum."""

    taken: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # chosen item indices (sorted)

    @property
    def value(self) -> float:
        return float(self.objective or 0.0)
