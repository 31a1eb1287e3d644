"""The MILP backends' shared part: a `LinearModel` as a PuLP problem (solved by cbc.py, highs.py).

An enforced constraint `lits => a.x <= b` becomes `a.x <= b + M * (len(lits) - sum(lits))` with
M = max(a.x) - b over the variables' bounds: the smallest M that makes the constraint vacuous
when a literal is 0, so the MILP and the CP-SAT model have the same integer solutions.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pulp

from formulations.exact.hindsight import HindsightModel
from formulations.exact.linear import LinearModel
from solvers.exact.phase import Phase, stopped_status
from solvers.interrupt import StopToken
from solvers.result import Status


@dataclass
class MilpModel:
    problem: pulp.LpProblem
    vars: list[pulp.LpVariable]


def to_milp(lm: LinearModel, name: str = "hindsight") -> MilpModel:
    prob = pulp.LpProblem(name, pulp.LpMaximize)
    with warnings.catch_warnings():  # PuLP 3 deprecates LpVariable(...) for 4.0; we pin pulp < 4
        warnings.simplefilter("ignore", DeprecationWarning)
        xs = _variables(lm)
    for k, c in enumerate(lm.constraints):
        terms = [(xs[v], coef) for v, coef in c.terms.items()]
        lo, hi = lm.activity_range(c.terms)
        senses = ["<=", ">="] if c.sense == "==" and c.enforce else [c.sense]
        for s, sense in enumerate(senses):
            expr = pulp.LpAffineExpression(terms)
            rhs = c.rhs
            if c.enforce:
                slack = len(c.enforce) - pulp.lpSum(xs[e] for e in c.enforce)
                if sense == "<=":
                    if hi <= c.rhs:
                        continue
                    expr = expr - (hi - c.rhs) * slack
                else:
                    if lo >= c.rhs:
                        continue
                    expr = expr + (c.rhs - lo) * slack
            op = {"<=": expr <= rhs, ">=": expr >= rhs, "==": expr == rhs}[sense]
            prob.addConstraint(op, name=f"c{k}_{s}")
    prob.setObjective(pulp.LpAffineExpression([(xs[v], coef) for v, coef in lm.objective.items()]) + lm.objective_offset)
    return MilpModel(prob, xs)


def _variables(lm: LinearModel) -> list[pulp.LpVariable]:
    return [pulp.LpVariable(f"v{k}", lowBound=lo, upBound=hi, cat=pulp.LpBinary if (lo, hi) == (0, 1) else pulp.LpInteger)
            for k, (lo, hi) in enumerate(zip(lm.lb, lm.ub, strict=True))]


def set_start(built: MilpModel, values: list[int]) -> None:
    for var, value in zip(built.vars, values, strict=True):
        var.setInitialValue(int(value))


def milp_phase(built: MilpModel, hm: HindsightModel, status: Status, bound: float | None, stop: StopToken) -> Phase:
    """A solved MILP as a `Phase`: "optimal" needs a solution that is a model point."""
    if status == Status.INFEASIBLE:
        return Phase(status, None, None)
    values = solution_values(built, hm)
    if status == Status.OPTIMAL and values is None:
        status = stopped_status(stop)
    return Phase(status, values, bound)


def solution_values(built: MilpModel, hm: HindsightModel) -> list[int] | None:
    """The MILP's solution as a model point, or None when it has none (or it breaks a constraint)."""
    if built.problem.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return None
    # PuLP leaves variables that no constraint mentions out of the MILP: they keep their lower bound
    values = [int(round(v.varValue)) if v.varValue is not None else lo
              for v, lo in zip(built.vars, hm.model.lb, strict=True)]
    return None if hm.model.check(values) else values
