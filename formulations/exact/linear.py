"""A backend-neutral integer linear model, so that CP-SAT and the MILP solve *the same* model.

The hindsight builder writes its variables and constraints once into a `LinearModel`; the
CP-SAT and PuLP translators (cpsat.py, milp.py) only change notation. All coefficients are
integers (CP-SAT needs that, and it keeps CBC and HiGHS free of rounding questions).

A constraint may carry enforcement literals: it must hold only when all of them are 1. CP-SAT
takes them as `OnlyEnforceIf`; the MILP turns them into the tightest big-M that the variables'
bounds allow, so the two stay equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Terms = dict[int, int]  # variable index -> integer coefficient


@dataclass
class Constraint:
    terms: Terms
    sense: str  # "<=", ">=", "=="
    rhs: int
    enforce: tuple[int, ...] = ()  # binary variable indices that must all be 1 for it to apply


@dataclass
class LinearModel:
    names: list[str] = field(default_factory=list)
    lb: list[int] = field(default_factory=list)
    ub: list[int] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)
    objective: Terms = field(default_factory=dict)  # maximized
    objective_offset: int = 0

    def var(self, name: str, lb: int, ub: int) -> int:
        if lb > ub:
            raise ValueError(f"variable {name}: empty domain [{lb}, {ub}]")
        self.names.append(name)
        self.lb.append(int(lb))
        self.ub.append(int(ub))
        return len(self.names) - 1

    def binary(self, name: str) -> int:
        return self.var(name, 0, 1)

    def add(self, terms: Terms, sense: str, rhs: int, enforce: tuple[int, ...] = ()) -> None:
        clean = {v: int(c) for v, c in terms.items() if c}
        if not clean and not enforce:
            ok = {"<=": 0 <= rhs, ">=": 0 >= rhs, "==": rhs == 0}[sense]
            if not ok:
                raise ValueError(f"constant constraint 0 {sense} {rhs} is violated")
            return
        self.constraints.append(Constraint(clean, sense, int(rhs), tuple(enforce)))

    def fix(self, var: int, value: int) -> None:
        self.lb[var] = max(self.lb[var], value)
        self.ub[var] = min(self.ub[var], value)
        if self.lb[var] > self.ub[var]:
            raise ValueError(f"variable {self.names[var]}: fixing to {value} empties its domain")

    @property
    def num_vars(self) -> int:
        return len(self.names)

    def activity_range(self, terms: Terms) -> tuple[int, int]:
        lo = sum(c * (self.lb[v] if c > 0 else self.ub[v]) for v, c in terms.items())
        hi = sum(c * (self.ub[v] if c > 0 else self.lb[v]) for v, c in terms.items())
        return lo, hi

    def check(self, values: list[int]) -> list[str]:
        """Names of violated constraints/bounds under `values` (for tests and hint checks)."""
        bad = [f"bound {self.names[v]}={values[v]}" for v in range(self.num_vars)
               if not self.lb[v] <= values[v] <= self.ub[v]]
        for k, c in enumerate(self.constraints):
            if c.enforce and not all(values[e] for e in c.enforce):
                continue
            act = sum(coef * values[v] for v, coef in c.terms.items())
            ok = {"<=": act <= c.rhs, ">=": act >= c.rhs, "==": act == c.rhs}[c.sense]
            if not ok:
                bad.append(f"constraint #{k} ({', '.join(self.names[v] for v in list(c.terms)[:3])} ...)")
        return bad

    def objective_value(self, values: list[int]) -> int:
        return self.objective_offset + sum(c * values[v] for v, c in self.objective.items())
