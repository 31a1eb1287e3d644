"""Translate a `LinearModel` into an OR-Tools CP-SAT model (enforcement literals -> OnlyEnforceIf)."""

from __future__ import annotations

from dataclasses import dataclass

from ortools.sat.python import cp_model

from formulations.exact.linear import LinearModel


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


def add_hint(built: CpsatModel, values: list[int]) -> None:
    for var, value in zip(built.vars, values, strict=True):
        built.model.AddHint(var, int(value))
