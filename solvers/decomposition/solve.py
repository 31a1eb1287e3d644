"""`solve_decomposition(instance, time_limit, hint)`: the hindsight optimum by a decomposition over
which units (requests, bulk groups) are met, in the compact regime (the token budget never binds).

The master (master.py) picks the heaviest set of units that no proven fact rules out; the
subproblem (feasibility.py) checks whether that set can be met on the engine, window component by
component (formulations/exact/met_units.py), with CP-SAT on the exact token model. A set that can
be met is a schedule: with every row of the master valid for every set that can be met, the master's
optimum is a proven bound, so a feasible choice weighing the bound is optimal. A set that
cannot yields a core (shrunk to few units), and its no-good cut rules out every superset. A
check that stays undecided within its time skips its set with an unproven cut: from then on the
master's optimum is no proof in this pass. When the master runs out of sets (or a few are left
undecided), the next pass starts from a master with the proven cuts only and gives each check
4x as long (what was proven is cached, so the checks resume where they stopped).

The result is the exact solvers' `SolveResult`: `optimal` only when proven; `bound` a proven
bound; on timeout or Ctrl-C / SIGTERM the best schedule (the hint's, if nothing better) and
the bound. `stats["curve"]` lists (seconds, best, bound) after each master round.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from formulations.bounds.intervals import build_relaxation
from formulations.bounds.slot_relaxation import slot_relaxation
from formulations.exact.build import build_model
from formulations.exact.met_units import MetUnits, met_units
from formulations.instance import Instance
from formulations.metrics import DEFAULT_QOE_THRESHOLD
from solvers.bounds.slot_lp import SlotLp
from solvers.decomposition.cache import SubsetCache
from solvers.decomposition.feasibility import FeasibilityOracle
from solvers.decomposition.master import MetSetMaster
from solvers.exact.solve import SolveResult, engine_schedule, warm_start
from solvers.exact.tokens import compact_point
from solvers.interrupt import StopToken, interruptible
from solvers.result import Status, check_time_limit

FIRST_CHECK_SECONDS = 4.0  # a set's check in the first pass; each later pass gives 4x as long
PASS_GROWTH = 4.0
UNDECIDED_PER_PASS = 8  # a pass ends after this many undecided sets (the next checks get longer)
PROBE_SHARE = 0.25  # of a check's time, spent on the whole set before building it up unit by unit
SHRINK_SHARE = 0.5  # shrinking one core may take this share of a check's time
SHRINK_CHECK_SECONDS = 0.3  # each check while shrinking a core (undecided: the unit stays)


def solve_decomposition(instance: Instance, time_limit: float = 60.0, hint=None, *,
                        qoe_threshold: float = DEFAULT_QOE_THRESHOLD, workers: int = 2) -> SolveResult:
    """`hint`: a Schedule (with its iteration log) or an Assignment; its attainment is the first
    incumbent. `workers`: CP-SAT workers per feasibility check."""
    time_limit = check_time_limit(time_limit)
    hm = build_model(instance, qoe_threshold=qoe_threshold, kind="compact")
    with interruptible() as stop:
        result = _Decomposition(hm, workers, stop).run(time_limit, hint)
    if stop.requested:
        result.stats["signal"] = stop.signal_name
    return result


class _Decomposition:
    def __init__(self, hm, workers: int, stop: StopToken) -> None:
        self.hm = hm
        self.units: MetUnits = met_units(hm)
        self.cache = SubsetCache()
        self.oracle = FeasibilityOracle(hm, self.units, self.cache, workers, stop)
        self.rel = build_relaxation(hm.instance, hm.qoe_threshold)
        self.stop = stop
        self.values: list[int] = []
        self.best = 0
        self.bound = 0
        self.curve: list[tuple[float, int, int]] = []
        self.rounds: list[dict] = []
        self.cuts = self.interval_rows = self.passes = 0
        self.slot_lp_bound: int | None = None

    def run(self, time_limit: float, hint) -> SolveResult:
        start = time.perf_counter()
        deadline = start + time_limit
        hm, units = self.hm, self.units
        self.values = warm_start(hm.instance, hm, hint) or compact_point(hm, {})
        self.best = hm.attainment(self.values)
        self.bound = units.total(u for u in range(units.count) if units.alive[u])
        check = FIRST_CHECK_SECONDS
        undecided = 0
        # the slot LP (about 1 s to write down) can only lower the bound inside the loop below:
        # when the loop has nothing to do (the hint meets the bound, or no time) it is not built
        needed = not self.stop.requested and self.best < self.bound and time.perf_counter() < deadline
        with self._slot_lp_alongside(time_limit) if needed else contextlib.nullcontext():
            while not self.stop.requested and self.best < self.bound and time.perf_counter() < deadline:
                undecided = self._pass(deadline, check, start)
                self.passes += 1
                check *= PASS_GROWTH
                if not undecided:
                    break
            self._take_slot_lp()
        status = Status.TIMEOUT
        if self.best >= self.bound:
            status, self.bound = Status.OPTIMAL, self.best
        elif self.stop.requested:
            status = Status.INTERRUPTED
        assignment, schedule = engine_schedule(hm, self.values, {"policy": "exact-decomposition",
                                                                 "status": str(status)})
        stats = {"model": "decomposition", "variables": hm.model.num_vars, "constraints": len(hm.model.constraints),
                 "units": units.count, "passes": self.passes, "checks": self.oracle.checks,
                 "check_seconds": round(self.oracle.check_seconds, 2), "cores": len(self.cache.cores),
                 "cuts": self.cuts, "interval_rows": self.interval_rows, "cache_hits": self.cache.hits,
                 "undecided": undecided, "slot_lp_bound": self.slot_lp_bound, "curve": self.curve, "rounds": self.rounds,
                 "core_sets": [sorted(core) for core in self.cache.cores]}
        return SolveResult(status, self.best, self.bound, time.perf_counter() - start, "cpsat", schedule, assignment,
                           hm.unfinished_slots(self.values), None, hm.horizon, stats)

    @contextlib.contextmanager
    def _slot_lp_alongside(self, time_limit: float) -> Iterator[None]:
        """The slot relaxation's LP bound (solvers/bounds/slot_lp.py) solved in a thread while the
        master and the checks run: where KV is tight all along it proves what no core refutes,
        and it takes as long as many checks. It is cancelled when the block ends."""
        rel = self.rel
        lp = SlotLp(slot_relaxation(self.hm.instance, rel.windows, rel.unit, rel.weight, rel.alive,
                                    self.hm.qoe_threshold))

        def solve() -> None:
            self.slot_lp_bound = lp.solve(time_limit)

        thread = threading.Thread(target=solve, name="slot-lp", daemon=True)
        thread.start()
        try:
            yield
        finally:
            lp.cancel()
            thread.join()

    def _take_slot_lp(self) -> bool:
        """Cap the bound by the slot LP's once it is in; whether that lowered it."""
        if self.slot_lp_bound is None or self.slot_lp_bound >= self.bound:
            return False
        self.bound = max(self.slot_lp_bound, self.best)
        return True

    def _pass(self, deadline: float, check: float, start: float) -> int:
        """Master rounds until the master runs out of sets, `UNDECIDED_PER_PASS` sets stay
        undecided, or time runs out; the number of sets left undecided. The master starts from the proven cores only, so its bound is a proof until
        the first undecided set."""
        master = MetSetMaster(self.rel, self.units)
        master.at_most(self.bound)
        master.better_than(self.best)
        for core in self.cache.cores:
            master.cut(core)
        undecided = 0
        while not self.stop.requested and self.best < self.bound and undecided < UNDECIDED_PER_PASS:
            if self._take_slot_lp():
                master.at_most(self.bound)
                if self.best >= self.bound:
                    break
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            choice = master.solve(left)
            if not undecided:
                self.bound = self.best if choice.infeasible else min(self.bound, max(self.best, choice.bound
                                                                                  if choice.bound is not None
                                                                                  else self.bound))
            if choice.units is None:
                break
            if self._round(master, choice.units, min(check, deadline - time.perf_counter())) == "undecided":
                undecided += 1
                master.cut(choice.units)
            self.curve.append((round(time.perf_counter() - start, 2), self.best, self.bound))
        self.cuts += master.cuts
        self.interval_rows += master.interval_rows
        return undecided

    def _round(self, master: MetSetMaster, chosen: frozenset[int], check: float) -> str:
        """Check the master's choice: a better incumbent (the choice, or a part of it checked on
        the way), or a shrunk core cut from the master. Returns the outcome: feasible, core or
        undecided."""
        t0 = time.perf_counter()
        verdict = self.oracle.verdict(chosen, check, PROBE_SHARE * check)
        outcome = "feasible" if verdict.feasible else "core" if verdict.core is not None else "undecided"
        self.rounds.append({"chosen": self.units.total(chosen), "outcome": outcome,
                            "check_seconds": round(time.perf_counter() - t0, 2)})
        if self.oracle.best[0] > self.best:
            self.values = compact_point(self.hm, self.oracle.best[1])
            self.best = self.hm.attainment(self.values)
            master.better_than(self.best)
        if verdict.core is not None:
            core = self.oracle.shrink(verdict.core, SHRINK_SHARE * check, SHRINK_CHECK_SECONDS)
            self.rounds[-1].update(core=len(verdict.core), shrunk=len(core))
            master.cut(core)
        return outcome
