"""`upper_bound(instance)`: an upper bound on hindsight SLO attainment, by row generation on the
interval relaxation (formulations/bounds/intervals.py) with HiGHS.

The relaxation has one row per (interval start, interval end, resource): far too many to write
down at 1,000 requests. We start with none, solve the LP, scan a grid of intervals (starts: every
release; ends: up to `max_ends` latest times) for the rows the LP point violates most, add them,
and repeat; then (small instances) make the unit variables integer and repeat with the MIP. Every solve
is of a relaxation with a subset of valid rows, so its optimum (LP) or dual bound (MIP) is a valid
upper bound at any moment: the time limit never makes the result invalid, only looser. The
returned bound is the least of them, rounded down (attainment counts are integers).

In slotted mode the time left then goes to the per-slot KV relaxation
(formulations/bounds/slot_relaxation.py), which sees the block-slots that interval rows average
away: first its time-indexed LP (solvers/bounds/slot_lp.py, seconds where KV is tight all along),
then CP-SAT on it (solvers/bounds/slot_cpsat.py, which also uses integrality); the least of all
bounds is returned.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import highspy
import numpy as np

from formulations.bounds.intervals import IntervalRelaxation, build_relaxation
from formulations.bounds.slot_relaxation import slot_relaxation
from formulations.instance import Instance
from formulations.metrics import DEFAULT_QOE_THRESHOLD
from solvers.bounds import INTEGER_ROUNDING
from solvers.bounds.slot_cpsat import slot_bound
from solvers.bounds.slot_lp import slot_lp_bound
from solvers.exact.highs import quiet_stdout

ROWS_PER_ROUND = 40
VIOLATION_TOL = 1e-7  # seconds of overload below which a row is not worth adding
MIN_SLOT_SECONDS = 0.2  # the slot relaxation is skipped with less time than this left


class BoundViolated(AssertionError):
    """A schedule scored above the upper bound: the bound (or the simulator) is wrong."""


@dataclass
class BoundResult:
    """`bound`: SLO-met requests no schedule can exceed (bulk groups weigh their size);
    `status`: "converged" (no grid row violated at the end) or "time limit" (still valid, looser)."""

    bound: int
    requests: int
    lp_value: float
    status: str
    rows: int
    rounds: int
    seconds: float
    alone_infeasible: int  # requests whose unit cannot meet its SLO even alone
    slot_bound: int | None = None  # the per-slot KV relaxation's bound by CP-SAT (slotted mode; None: not run or unproven)
    slot_lp_bound: int | None = None  # the same relaxation's time-indexed LP bound (None: not run, too large or out of time)

    @property
    def attainment(self) -> float:
        return self.bound / self.requests if self.requests else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "attainment": self.attainment}

    def check(self, slo_met: int, what: str) -> None:
        """Raise BoundViolated if a schedule (`what`) met more SLOs than the bound allows."""
        if slo_met > self.bound:
            raise BoundViolated(f"{what}: {slo_met} SLOs met > upper bound {self.bound}: the bound is invalid")


def upper_bound(instance: Instance, qoe_threshold: float = DEFAULT_QOE_THRESHOLD, time_limit: float = 60.0,
                max_ends: int = 1500, integer_units: int = 300, slots: bool = True) -> BoundResult:
    """The bound of `instance`. Up to `integer_units` units the rows found by the LP are solved
    again as a MIP (tighter; HiGHS does not always stop on time on large knapsack MIPs, so
    larger instances keep the LP bound). `slots=False` skips the per-slot KV relaxation (the
    interval bound alone, for comparison)."""
    start = time.perf_counter()
    deadline = start + time_limit
    rel = build_relaxation(instance, qoe_threshold)
    n = len(instance.requests)
    live = np.flatnonzero(rel.alive[rel.unit])
    alone_infeasible = n - len(live)
    if len(live) == 0:
        return BoundResult(0, n, 0.0, "converged", 0, 0, time.perf_counter() - start, alone_infeasible)
    scan = IntervalScan(rel, live, max_ends)
    lp = UnitMaster(rel)
    bounds = [float(rel.weight[rel.alive].sum())]
    rounds = 0
    status = "time limit"
    lp_value = math.inf
    for integer_phase in ((False, True) if len(rel.weight) <= integer_units else (False,)):
        if integer_phase:
            lp.make_integer()
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            dual, y = lp.solve(left)
            bounds.append(dual)
            rounds += 1
            if y is None:
                break
            added = lp.add_rows(scan.violated(y))
            if not added:
                status = "converged"
                break
        if not integer_phase:
            lp_value = min(bounds)
    bound = min(int(math.floor(min(bounds) + INTEGER_ROUNDING)), int(rel.weight[rel.alive].sum()))
    by_slots = by_slot_lp = None
    if slots and instance.engine.slot_time is not None and deadline - time.perf_counter() > MIN_SLOT_SECONDS:
        relaxation = slot_relaxation(instance, rel.windows, rel.unit, rel.weight, rel.alive, qoe_threshold)
        by_slot_lp = slot_lp_bound(relaxation, deadline - time.perf_counter())
        left = deadline - time.perf_counter()
        by_slots = slot_bound(relaxation, left) if left > MIN_SLOT_SECONDS else None
        bound = min([bound] + [b for b in (by_slot_lp, by_slots) if b is not None])
    return BoundResult(bound, n, lp_value, status, lp.rows, rounds, time.perf_counter() - start, alone_infeasible,
                       by_slots, by_slot_lp)


class IntervalScan:
    """The grid of candidate rows: W_i,res(b) for the live requests sorted by release (latest
    first), so the rows of every start a are prefix sums."""

    def __init__(self, rel: IntervalRelaxation, live: np.ndarray, max_ends: int) -> None:
        release = rel.release[live]
        order = np.argsort(-release, kind="stable")
        self.requests = live[order]
        self.release = release[order]
        self.ends = rel.interval_ends(self.requests, max_ends)
        self.demand = rel.demand_at(self.requests, self.ends)  # (m, nb, 3)
        self.starts, first = np.unique(self.release, return_index=True)
        self.count = np.array([np.count_nonzero(self.release >= a) for a in self.starts])
        self.capacity = rel.capacity(self.starts[:, None], self.ends[None, :])  # (na, nb)
        self.unit = rel.unit[self.requests]

    def violated(self, y: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """The most violated rows at unit values `y`: (coefficients per unit, capacity) each."""
        x = y[self.unit]
        load = np.cumsum(x[:, None, None] * self.demand, axis=0)[self.count - 1]  # (na, nb, 3)
        over = load - self.capacity[:, :, None]
        flat = over.ravel()
        k = min(ROWS_PER_ROUND, flat.size)
        top = np.argpartition(-flat, k - 1)[:k]
        top = top[flat[top] > VIOLATION_TOL]
        rows = []
        for a, b, res in zip(*np.unravel_index(top, over.shape), strict=True):
            m = self.count[a]
            coef = np.bincount(self.unit[:m], weights=self.demand[:m, b, res], minlength=len(y))
            rows.append((coef, float(self.capacity[a, b])))
        return rows


class UnitMaster:
    """The LP/MIP over unit variables, kept in one HiGHS object so rows are added incrementally."""

    def __init__(self, rel: IntervalRelaxation) -> None:
        with quiet_stdout():
            self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        self.h.setOptionValue("mip_rel_gap", 0.0)
        self.units = len(rel.weight)
        upper = rel.alive.astype(np.float64)
        self.h.addVars(self.units, np.zeros(self.units), upper)
        self.h.changeColsCost(self.units, np.arange(self.units, dtype=np.int32), rel.weight.astype(np.float64))
        self.h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        self.integer = False
        self.rows = 0

    def make_integer(self) -> None:
        self.h.changeColsIntegrality(self.units, np.arange(self.units, dtype=np.int32),
                                     np.array([highspy.HighsVarType.kInteger] * self.units))
        self.integer = True

    def add_rows(self, rows: list[tuple[np.ndarray, float]]) -> int:
        for coef, cap in rows:
            idx = np.flatnonzero(coef).astype(np.int32)
            self.h.addRow(-highspy.kHighsInf, cap, len(idx), idx, coef[idx])
        self.rows += len(rows)
        return len(rows)

    def solve(self, time_limit: float) -> tuple[float, np.ndarray | None]:
        """(valid upper bound, unit values or None) of the current relaxation."""
        self.h.setOptionValue("time_limit", float(max(time_limit, 0.01)))
        with quiet_stdout():
            self.h.run()
        info = self.h.getInfo()
        y = np.asarray(self.h.getSolution().col_value, dtype=np.float64)
        status = self.h.getModelStatus()
        found = y if len(y) == self.units else None
        if self.integer:
            return (info.mip_dual_bound if math.isfinite(info.mip_dual_bound) else math.inf), found
        if status != highspy.HighsModelStatus.kOptimal:
            return math.inf, found  # an unfinished LP proves nothing
        return info.objective_function_value, found
