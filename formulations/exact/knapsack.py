"""The per-step batch-selection problem as an m-D 0/1 knapsack (solved by solvers/knapsack/).

At one scheduling step a policy picks a subset of candidate requests: item i has a value (the
policy's marginal SLO value of running it now) and integer weights (KV blocks it needs, tokens
it uses this iteration, ...); the capacities are the free KV blocks and the token budget, and
an optional cardinality bound is `max_seqs`. Weights and capacities are integers because they
count blocks and tokens; values may be real. The same class carries OR-Library benchmark
problems (`read_orlib`), whose values are integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from formulations.requests import ValidationError
from formulations.arithmetic import ceil_div

MAX_NUMBER = 1e9  # x CP-SAT's value scale (1e6) x thousands of items still fits its 64-bit integers


@dataclass(frozen=True)
class KnapsackProblem:
    """maximize values @ x  s.t.  weights.T @ x <= capacities,  sum(x) <= max_items,  x binary."""

    values: np.ndarray  # (n,) float
    weights: np.ndarray  # (n, m) int64 >= 0
    capacities: np.ndarray  # (m,) int64 >= 0
    max_items: int | None = None
    best_known: float | None = None  # from a benchmark file, when it states one
    name: str = "knapsack"

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        weights = np.asarray(self.weights)
        capacities = np.asarray(self.capacities)
        if values.ndim != 1:
            raise ValidationError(f"{self.name}: values must be 1-D, got shape {values.shape}")
        if weights.ndim != 2 or weights.shape[0] != len(values):
            raise ValidationError(f"{self.name}: weights shape {weights.shape} must be (n={len(values)}, m)")
        if capacities.shape != (weights.shape[1],):
            raise ValidationError(f"{self.name}: capacities shape {capacities.shape} must be ({weights.shape[1]},)")
        for field_name, arr in (("weights", weights), ("capacities", capacities)):
            if not np.all(np.equal(np.mod(arr, 1), 0)):
                raise ValidationError(f"{self.name}: {field_name} must be integers (blocks, tokens)")
            if np.any(arr < 0):
                raise ValidationError(f"{self.name}: {field_name} must be >= 0, got min {arr.min()}")
        if not np.all(np.isfinite(values)):
            raise ValidationError(f"{self.name}: values must be finite")
        if self.max_items is not None and self.max_items < 0:
            raise ValidationError(f"{self.name}: max_items={self.max_items} must be >= 0")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "weights", weights.astype(np.int64))
        object.__setattr__(self, "capacities", capacities.astype(np.int64))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def m(self) -> int:
        return self.weights.shape[1]

    def is_feasible(self, taken: np.ndarray) -> bool:
        taken = np.asarray(taken, dtype=np.int64)
        if len(set(taken.tolist())) != len(taken):
            return False
        if self.max_items is not None and len(taken) > self.max_items:
            return False
        return bool(np.all(self.weights[taken].sum(axis=0) <= self.capacities))

    def value(self, taken: np.ndarray) -> float:
        return float(self.values[np.asarray(taken, dtype=np.int64)].sum())

    def integral_values(self) -> bool:
        return bool(np.all(np.equal(np.mod(self.values, 1), 0)))


def step_knapsack(view, values: np.ndarray, candidates: np.ndarray | None = None) -> KnapsackProblem:
    """The per-step batch-selection knapsack of one `EngineView` (formulations.online).

    Item k = live request `view.idx[candidates[k]]` (all live requests by default) with the
    policy's marginal SLO value `values[k]`; weight 1 = the KV blocks it must newly allocate to
    run now (its whole remaining prefill, or one decode token: blocks_for(computed + chunk) -
    held), weight 2 = the tokens it processes; capacities = free blocks and the token budget;
    cardinality = max_seqs. Taking items whole (no cut chunk) is the knapsack view of a step.
    """
    spec = view.engine
    cand = np.arange(len(view)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    chunk = np.where(view.prefill_left[cand] > 0, view.prefill_left[cand], 1)
    need = ceil_div((view.computed[cand] + chunk), spec.block_size) - view.kv_blocks[cand]
    weights = np.stack([np.maximum(need, 0), chunk], axis=1)
    return KnapsackProblem(np.asarray(values, dtype=np.float64), weights,
                           np.array([view.free_blocks, spec.token_budget]), max_items=spec.max_seqs, name="step")


def read_orlib(path: str | Path, text: str | None = None) -> list[KnapsackProblem]:
    """Problems of an OR-Library multidimensional knapsack file (mknap1 / mknapcb format).

    The file is a stream of numbers: K, then per problem `n m best_known`, n profits, m rows of n
    weights, m capacities. A best_known of 0 means "not stated" (mknapcb files use 0). `text`
    is the file's content when the caller has read it already. Every number must be finite and
    non-negative and at most MAX_NUMBER, so that the exact solvers' integer arithmetic is exact.
    """
    path = Path(path)
    tokens = (path.read_text() if text is None else text).split()
    try:
        numbers = [float(t) for t in tokens]
    except ValueError as err:
        raise ValidationError(f"{path}: not an OR-Library knapsack file ({err})") from None
    bad = next((k for k, x in enumerate(numbers) if not (math.isfinite(x) and 0 <= x <= MAX_NUMBER)), None)
    if bad is not None:
        raise ValidationError(f"{path}: number #{bad + 1} = {tokens[bad]} is out of range: every number must be "
                              f"in [0, {MAX_NUMBER:.0e}]")
    pos = 0

    def take(count: int, what: str) -> list[float]:
        nonlocal pos
        if pos + count > len(numbers):
            raise ValidationError(f"{path}: file ends while reading {what} (needs {count} more numbers at #{pos})")
        chunk = numbers[pos:pos + count]
        pos += count
        return chunk

    (k,) = take(1, "the problem count")
    if k != int(k):
        raise ValidationError(f"{path}: the problem count {k:g} is not a whole number")
    problems = []
    for p in range(int(k)):
        n, m, best = take(3, f"problem {p + 1} header 'n m best_known'")
        if n != int(n) or m != int(m) or n < 1 or m < 1 or n * m > len(numbers):
            raise ValidationError(f"{path}: problem {p + 1} has n={n:g}, m={m:g}; both must be whole numbers >= 1 "
                                  f"and the file must hold n x m weights")
        n, m = int(n), int(m)
        profits = take(n, f"problem {p + 1} profits")
        weights = np.array(take(n * m, f"problem {p + 1} weights")).reshape(m, n).T
        capacities = take(m, f"problem {p + 1} capacities")
        problems.append(KnapsackProblem(np.array(profits), weights, np.array(capacities),
                                        best_known=best if best > 0 else None, name=f"{path.name}#{p + 1}"))
    if pos != len(numbers):
        raise ValidationError(f"{path}: {len(numbers) - pos} numbers left over after {int(k)} problems")
    return problems
