"""What an exact knapsack solver returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KnapsackResult:
    """`status` is optimal, feasible (time ran out: `bound` is the proven upper bound) or infeasible."""

    taken: np.ndarray  # chosen item indices (sorted)
    value: float  # value of `taken`, recomputed from the problem's real values
    bound: float  # proven upper bound on the optimum (== value when optimal)
    status: str
    seconds: float

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"
