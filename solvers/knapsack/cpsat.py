"""Exact m-D knapsack by OR-Tools CP-SAT (any size; proves optimality or returns a bound)."""

from __future__ import annotations

import time

import numpy as np
from ortools.sat.python import cp_model

from formulations.exact.knapsack import KnapsackProblem, build_cpsat
from solvers.knapsack.result import KnapsackResult


def solve_cpsat(problem: KnapsackProblem, time_limit: float = 10.0, workers: int = 2) -> KnapsackResult:
    """Optimum of `problem`; on timeout the best found and CP-SAT's bound (status "feasible")."""
    start = time.perf_counter()
    built = build_cpsat(problem)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit)
    solver.parameters.num_workers = workers
    code = solver.Solve(built.model)
    seconds = time.perf_counter() - start
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        # A knapsack is always feasible (take nothing): reaching here means no solution in time.
        return KnapsackResult(np.empty(0, dtype=np.int64), 0.0, float("inf"), "timeout", seconds)
    taken = np.array([i for i, xi in enumerate(built.x) if solver.Value(xi)], dtype=np.int64)
    value = problem.value(taken)
    if code == cp_model.OPTIMAL:
        return KnapsackResult(taken, value, value, "optimal", seconds)
    bound = solver.BestObjectiveBound() / built.scale
    return KnapsackResult(taken, value, max(bound, value), "feasible", seconds)
