"""The master problem: the heaviest set of units not yet ruled out, a small MIP over one binary per
unit (HiGHS, through the interval bound's `UnitMaster`).

Rows: the interval relaxation's energetic rows (formulations/bounds/intervals.py), added lazily
where the master's choice violates them; one no-good per core ("not all of these"); twins in
index order (met ones first, which makes a core's no-good stand for all its twin swaps, see
MetUnits.canonical); and "better than the incumbent". Every row but the last holds for every
set that can be met, so the master's optimum over them (or over the incumbent) is a proven bound.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import highspy
import numpy as np

from formulations.bounds.intervals import IntervalRelaxation
from formulations.exact.met_units import MetUnits
from solvers.bounds.interval_lp import IntervalScan, UnitMaster
from solvers.bounds import INTEGER_ROUNDING


class MasterChoice(NamedTuple):
    """`units`: the chosen set (None: none, see `infeasible`, or the MIP ran out of time);
    `bound`: proven upper bound on the weight of every set satisfying the rows (None: none
    proven); `infeasible`: no set satisfies them."""

    units: frozenset[int] | None
    bound: int | None
    infeasible: bool = False


class MetSetMaster:
    def __init__(self, rel: IntervalRelaxation, units: MetUnits, max_ends: int = 1500) -> None:
        self.units = units
        self.lp = UnitMaster(rel)
        self.lp.make_integer()
        live = np.flatnonzero(units.alive[units.unit])
        self.scan = IntervalScan(rel, live, max_ends) if len(live) else None
        for u in np.flatnonzero(~units.alive):
            self._add(self._coef({int(u): 1.0}), 0.0)
        for cls in units.twins:
            for a, b in zip(cls, cls[1:]):
                self._add(self._coef({b: 1.0, a: -1.0}), 0.0)
        self.cuts = 0
        self.interval_rows = 0

    def cut(self, core: frozenset[int]) -> None:
        """Not every unit of `core` is met."""
        self._add(self._coef({u: 1.0 for u in core}), len(core) - 1.0)
        self.cuts += 1

    def at_most(self, weight: int) -> None:
        """No set weighs more than `weight` (a proven bound from elsewhere, e.g. the slot LP)."""
        self._add(self.units.weight.astype(np.float64), float(weight))

    def better_than(self, weight: int) -> None:
        """Only sets weighing more than `weight` (an incumbent's) are of interest now."""
        self._add(-self.units.weight.astype(np.float64), -(weight + 1.0))

    def solve(self, time_limit: float) -> MasterChoice:
        """The heaviest set satisfying every row. Interval rows the choice violates are added and
        the MIP solved again until none is (or the rows added leave the choice as it was: rounding
        noise; the subproblem checks the choice exactly anyway)."""
        deadline = time.perf_counter() + time_limit
        previous = None
        while True:
            bound, y = self.lp.solve(deadline - time.perf_counter())
            status = self.lp.h.getModelStatus()
            if status == highspy.HighsModelStatus.kInfeasible:
                return MasterChoice(None, None, infeasible=True)
            proven = None if not math.isfinite(bound) else int(math.floor(bound + INTEGER_ROUNDING))
            if status != highspy.HighsModelStatus.kOptimal or y is None:
                return MasterChoice(None, proven)
            chosen = frozenset(int(u) for u in np.flatnonzero(y > 0.5))
            rows = self.scan.violated(np.round(y)) if self.scan is not None else []
            if not rows or chosen == previous:
                return MasterChoice(chosen, proven)
            self.interval_rows += self.lp.add_rows(rows)
            previous = chosen

    def _coef(self, terms: dict[int, float]) -> np.ndarray:
        coef = np.zeros(self.units.count)
        for u, c in terms.items():
            coef[u] = c
        return coef

    def _add(self, coef: np.ndarray, cap: float) -> None:
        self.lp.add_rows([(coef, cap)])
