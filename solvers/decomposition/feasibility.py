"""The subproblem: can every unit of a set be met at once? CP-SAT on the token-indexed model
(solvers/exact/tokens.py) of just those units' requests, the others dropped (exact by the
compact model's dominance 2), their met literals as assumptions.

A proof of infeasibility comes with CP-SAT's sufficient assumptions: a subset of the set that is
already infeasible (a core, not necessarily minimal), which `shrink` then reduces one unit at a
time with short checks. A smaller core is a stronger cut for the master.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from formulations.exact.hindsight import HindsightModel
from formulations.exact.met_units import MetUnits
from solvers.decomposition.cache import SubsetCache
from solvers.exact.cpsat import has_solution, run_cpsat
from solvers.exact.tokens import build_tokens
from solvers.interrupt import StopToken
from solvers.result import Status


@dataclass(frozen=True)
class Verdict:
    """`slots`: a schedule meeting the set (token slots by request index); `core`: a subset proven
    infeasible; neither: undecided in the time given."""

    slots: dict[int, list[int]] | None = None
    core: frozenset[int] | None = None

    @property
    def feasible(self) -> bool:
        return self.slots is not None


class FeasibilityOracle:
    def __init__(self, hm: HindsightModel, units: MetUnits, cache: SubsetCache, workers: int, stop: StopToken) -> None:
        self.hm, self.units, self.cache, self.workers, self.stop = hm, units, cache, workers, stop
        self.checks = 0
        self.check_seconds = 0.0
        self.best: tuple[int, dict[int, list[int]]] = (0, {})  # heaviest set proven feasible: weight, slots

    def verdict(self, units: frozenset[int], time_limit: float, probe: float | None = None) -> Verdict:
        """Whether `units` can all be met: from the cache, else part by part (window components).
        With `probe`, a part undecided after `probe` seconds is built up instead (`_grow`)."""
        parts = self.units.components(units)
        slots: dict[int, list[int]] = {}
        deadline = time.perf_counter() + time_limit
        for part in sorted(parts, key=len):
            known = self._known(part)
            if known is None:
                left = deadline - time.perf_counter()
                known = self._check(part, left if probe is None else min(probe, left))
                if probe is not None and known.core is None and not known.feasible:
                    known = self._grow(part, deadline)
            if known.core is not None:
                return known
            if not known.feasible:
                return Verdict()
            slots.update({i: s for i, s in known.slots.items() if self.units.unit[i] in part})
        return self._feasible(units, slots) if len(parts) > 1 else Verdict(slots=slots)

    def shrink(self, core: frozenset[int], time_limit: float, check_limit: float) -> frozenset[int]:
        """Drop units from `core` while what is left is still proven infeasible (each check at
        most `check_limit` s; an undecided check keeps its unit)."""
        deadline = time.perf_counter() + time_limit
        for u in sorted(core, key=lambda u: -self.units.weight[u]):
            left = deadline - time.perf_counter()
            if u not in core or left <= 0 or self.stop.requested:
                continue
            trial = core - {u}
            found = self.verdict(trial, min(check_limit, left))
            if found.core is not None:
                core = found.core
        return core

    def _grow(self, units: frozenset[int], deadline: float) -> Verdict:
        """Add the units one at a time, by window end, until the set cannot be met: each check is of
        a smaller set than `units` (the first sets are quick) and starts from the last schedule;
        the first set that fails holds a core with the unit just added."""
        met: frozenset[int] = frozenset()
        slots: dict[int, list[int]] = {}
        for u in sorted(units, key=lambda u: self.units.window[u][::-1]):
            trial = met | {u}
            known = self._known(trial) or self._check(trial, deadline - time.perf_counter(), slots)
            if not known.feasible:
                return known
            met, slots = trial, known.slots
        return Verdict(slots=slots)

    def _known(self, units: frozenset[int]) -> Verdict | None:
        slots = self.cache.schedule_of(units)
        if slots is not None:
            return Verdict(slots=slots)
        core = self.cache.core_in(units)
        return None if core is None else Verdict(core=core)

    def _check(self, units: frozenset[int], time_limit: float, hint: dict[int, list[int]] | None = None) -> Verdict:
        """CP-SAT on `units` alone; `hint`: token slots of some of their requests (a warm start)."""
        if time_limit <= 0.01 or self.stop.requested:
            return Verdict()
        t0 = time.perf_counter()
        tm = build_tokens(self.hm, only=self.units.requests(units), order_met=False)
        lits = {u: tm.met[self.units.key[u]] for u in units}
        tm.model.AddAssumptions(list(lits.values()))
        for i, values in (hint or {}).items():
            for var, value in zip(tm.slots[i], values if tm.slots[i] else (), strict=True):
                tm.model.AddHint(var, value)
        solver, status = run_cpsat(tm.model, time_limit, self.workers, self.stop)
        self.checks += 1
        self.check_seconds += time.perf_counter() - t0
        if status == Status.INFEASIBLE:
            by_index = {lit.Index(): u for u, lit in lits.items()}
            core = frozenset(by_index[i] for i in solver.SufficientAssumptionsForInfeasibility() if i in by_index)
            core = self.units.canonical(core or units)
            self.cache.add_core(core)
            return Verdict(core=core)
        if not has_solution(solver, status):
            return Verdict()
        slots = {i: [solver.Value(v) for v in tm.slots[i]] for i in self.units.requests(units) if tm.slots[i]}
        return self._feasible(units, slots)

    def _feasible(self, units: frozenset[int], slots: dict[int, list[int]]) -> Verdict:
        self.cache.add_feasible(units, slots)
        # only a canonical set (twins met in index order) is a point of the compact model
        if self.units.total(units) > self.best[0] and self.units.canonical(units) == units:
            self.best = (self.units.total(units), slots)
        return Verdict(slots=slots)
