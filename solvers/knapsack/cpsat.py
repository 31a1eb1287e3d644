"""Exact m-D knapsack by OR-Tools CP-SAT (any size; proves optimality or returns a bound)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from formulations.exact.knapsack import KnapsackProblem
from solvers.exact.cpsat import cpsat_bound, has_solution, run_cpsat
from solvers.interrupt import interruptible
from solvers.knapsack.result import KnapsackResult
from solvers.result import Status, check_time_limit

VALUE_SCALE = 10**6  # CP-SAT needs integer objective coefficients: real values are scaled, then rounded


@dataclass
class CpsatKnapsack:
    """A built CP-SAT model: `x[i]` takes item i; the objective is `scale * value` (rounded)."""

    model: cp_model.CpModel
    x: list[cp_model.IntVar]
    scale: int


def build_cpsat(problem: KnapsackProblem) -> CpsatKnapsack:
    """CP-SAT model of the knapsack. Integer values are kept exact; real ones are scaled by
    VALUE_SCALE and rounded (the reported value is recomputed from the chosen items)."""
    model = cp_model.CpModel()
    x = [model.NewBoolVar(f"x{i}") for i in range(problem.n)]
    for j in range(problem.m):
        model.Add(sum(int(w) * xi for w, xi in zip(problem.weights[:, j], x, strict=True) if w) <= int(problem.capacities[j]))
    if problem.max_items is not None:
        model.Add(sum(x) <= problem.max_items)
    scale = 1 if problem.integral_values() else VALUE_SCALE
    coefs = [int(round(v * scale)) for v in problem.values]
    for i, c in enumerate(coefs):
        if c <= 0:
            model.Add(x[i] == 0)  # never worth taking (as in the greedy)
    model.Maximize(sum(c * xi for c, xi in zip(coefs, x, strict=True) if c > 0))
    return CpsatKnapsack(model, x, scale)


def trivial_bound(problem: KnapsackProblem) -> float:
    """Every item with a positive value taken: an upper bound that needs no proof."""
    return float(problem.values[problem.values > 0].sum())


def solve_cpsat(problem: KnapsackProblem, time_limit: float = 10.0, workers: int = 2) -> KnapsackResult:
    """Optimum of `problem`; stopped early (time limit: timeout, SIGINT/SIGTERM: interrupted) the
    best found (at worst: nothing taken) and CP-SAT's bound, or the trivial bound if it has none."""
    time_limit = check_time_limit(time_limit)
    start = time.perf_counter()
    built = build_cpsat(problem)
    with interruptible() as stop:
        solver, status = run_cpsat(built.model, time_limit, workers, stop)
    seconds = time.perf_counter() - start
    taken = np.empty(0, dtype=np.int64)
    if has_solution(solver, status):
        taken = np.array([i for i, xi in enumerate(built.x) if solver.Value(xi)], dtype=np.int64)
    value = problem.value(taken)
    if status == Status.OPTIMAL:
        return KnapsackResult(status, value, value, seconds, taken)
    raw = cpsat_bound(solver)
    # scaled real values are rounded: allow for the rounding of every item in the bound
    slack = 0.0 if built.scale == 1 else problem.n * 0.5 / built.scale
    bound = trivial_bound(problem) if raw is None else min(raw / built.scale + slack, trivial_bound(problem))
    return KnapsackResult(status, value, bound, seconds, taken)
