"""The CP-SAT backend: a `LinearModel` translated to an OR-Tools model (enforcement literals ->
OnlyEnforceIf), and the one place that runs CP-SAT and reads its status and bound."""

from __future__ import annotations

from dataclasses import dataclass

from ortools.sat.python import cp_model

from formulations.exact.hindsight import HindsightModel
from formulations.exact.linear import LinearModel
from solvers.exact.phase import Phase, stopped_status
from solvers.interrupt import StopToken
from solvers.result import Status


@dataclass
class CpsatModel:
    model: cp_model.CpModel
    vars: list[cp_model.IntVar]


def to_cpsat(lm: LinearModel) -> CpsatModel:
    model = cp_model.CpModel()
    xs = [model.NewIntVar(lo, hi, name) for name, lo, hi in zip(lm.names, lm.lb, lm.ub, strict=True)]
    for c in lm.constraints:
        expr = cp_model.LinearExpr.WeightedSum([xs[v] for v in c.terms], list(c.terms.values()))
        if c.sense == "<=":
            ct = model.Add(expr <= c.rhs)
        elif c.sense == ">=":
            ct = model.Add(expr >= c.rhs)
        else:
            ct = model.Add(expr == c.rhs)
        if c.enforce:
            ct.OnlyEnforceIf([xs[e] for e in c.enforce])
    objective = cp_model.LinearExpr.WeightedSum([xs[v] for v in lm.objective], list(lm.objective.values()))
    model.Maximize(objective + lm.objective_offset)
    return CpsatModel(model, xs)


def run_cpsat(model: cp_model.CpModel, time_limit: float, workers: int,
              stop: StopToken, seed: int = 0) -> tuple[cp_model.CpSolver, Status | None]:
    """Solve `model`; returns the solver (values: `has_solution`, bound: `cpsat_bound`) and the
    status. `seed`: CP-SAT's random seed (a restart with another seed samples another run time)."""
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit)
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    solver.parameters.catch_sigint_signal = False  # solvers.interrupt owns the signals
    code = stop.run(lambda: solver.Solve(model), solver.StopSearch)
    if code == cp_model.MODEL_INVALID:
        raise AssertionError(f"CP-SAT rejects the model: {model.Validate()}")
    if code == cp_model.INFEASIBLE:
        return solver, Status.INFEASIBLE
    if code == cp_model.OPTIMAL:
        return solver, Status.OPTIMAL
    return solver, stopped_status(stop)


def has_solution(solver: cp_model.CpSolver, status: Status) -> bool:
    return status == Status.OPTIMAL or solver.ResponseProto().status == cp_model.FEASIBLE


def cpsat_bound(solver: cp_model.CpSolver) -> float | None:
    """CP-SAT's proven objective bound, or None where it has none: with no solution (status
    UNKNOWN) it reports 0, which is no bound at all."""
    if solver.ResponseProto().status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return solver.BestObjectiveBound()
    return None


def solve_linear(hm: HindsightModel, time_limit: float, start_values: list[int] | None, workers: int,
                 stop: StopToken) -> Phase:
    """CP-SAT on the shared slot-indexed model (its current objective)."""
    built = to_cpsat(hm.model)
    if start_values is not None:
        for var, value in zip(built.vars, start_values, strict=True):
            built.model.AddHint(var, int(value))
    solver, status = run_cpsat(built.model, time_limit, workers, stop)
    if status == Status.INFEASIBLE:
        return Phase(status, None, None)
    values = [solver.Value(v) for v in built.vars] if has_solution(solver, status) else None
    return Phase(status, values, cpsat_bound(solver))
