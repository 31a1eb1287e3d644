"""Exact m-D knapsack by dynamic programming over the capacity lattice (small capacities only).

The table holds, for every capacity vector c <= C, the best value using capacity at most c; one
vectorized numpy update per item. The cardinality bound, when given, is one more dimension with
unit weights. It is exact for real values and runs in O(n * prod(C_j + 1)): use it when that is
small (per-step problems with few free blocks), CP-SAT otherwise.
"""

from __future__ import annotations

import math
import time

import numpy as np

from formulations.exact.knapsack import KnapsackProblem
from formulations.requests import ValidationError
from solvers.knapsack.result import KnapsackResult
from solvers.result import Status

MAX_STATES = 2_000_000
MAX_CELLS = 100_000_000  # n * states booleans kept to recover the chosen items


def dp_size(problem: KnapsackProblem) -> int:
    """Number of capacity states the DP table needs."""
    dims = [int(c) + 1 for c in problem.capacities]
    if problem.max_items is not None:
        dims.append(problem.max_items + 1)
    return math.prod(dims)


def solve_dp(problem: KnapsackProblem) -> KnapsackResult:
    """Optimum of `problem` (always proven); raises ValidationError if the table is too large."""
    start = time.perf_counter()
    weights = problem.weights
    caps = [int(c) for c in problem.capacities]
    if problem.max_items is not None:
        weights = np.hstack([weights, np.ones((problem.n, 1), dtype=np.int64)])
        caps.append(problem.max_items)
    size = dp_size(problem)
    if size > MAX_STATES or size * problem.n > MAX_CELLS:
        raise ValidationError(
            f"{problem.name}: capacities {caps} give {size} DP states (limit {MAX_STATES}); use the CP-SAT solver")
    table = np.zeros([c + 1 for c in caps], dtype=np.float64)
    took = np.zeros((problem.n, *table.shape), dtype=bool)
    for i in range(problem.n):
        v = problem.values[i]
        w = weights[i]
        if v <= 0 or np.any(w > np.array(caps)):
            continue
        dst = tuple(slice(int(wj), None) for wj in w)
        src = tuple(slice(0, c + 1 - int(wj)) for c, wj in zip(caps, w, strict=True))
        candidate = table[src] + v
        better = candidate > table[dst]
        took[i][dst] = better
        table[dst] = np.where(better, candidate, table[dst])
    # Walk back from the full capacity.
    cell = list(caps)
    taken = []
    for i in range(problem.n - 1, -1, -1):
        if took[i][tuple(cell)]:
            taken.append(i)
            cell = [c - int(wj) for c, wj in zip(cell, weights[i], strict=True)]
    taken_arr = np.array(sorted(taken), dtype=np.int64)
    value = problem.value(taken_arr)
    return KnapsackResult(Status.OPTIMAL, value, value, time.perf_counter() - start, taken_arr)
