"""`solve(instance, backend, time_limit, hint)`: the hindsight optimum of a slotted instance.

One model (formulations.exact.hindsight) is built once and handed to one backend module:
cpsat.py (or tokens.py, CP-SAT's token-indexed form of the compact model), cbc.py, highs.py.
A warm start (a heuristic `Schedule` with its iteration log, or an `Assignment`) is played by
the engine rules into a full model point: CP-SAT gets it as hints, the MILPs as a MIP start,
and its attainment becomes a cut (attainment >= the hint's). Neither a time limit nor Ctrl-C /
SIGTERM raises: the result carries the best schedule found (if any), the proven bound and the
status that says which (solvers.result.Status).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from formulations.exact.assignment import Assignment, assignment_from_schedule, decode, model_values, play, to_schedule
from formulations.exact.build import build_model
from formulations.exact.hindsight import HindsightModel
from formulations.instance import Instance
from formulations.metrics import DEFAULT_QOE_THRESHOLD
from formulations.requests import ValidationError
from formulations.schedule import Schedule
from solvers.exact import tokens
from solvers.exact.cbc import solve_cbc
from solvers.exact.cpsat import solve_linear
from solvers.exact.highs import solve_highs
from solvers.interrupt import StopToken, interruptible
from solvers.result import SolverResult, Status, check_time_limit

BACKENDS = ("cpsat", "cbc", "highs")
_LINEAR_BACKENDS = {"cpsat": solve_linear, "cbc": solve_cbc, "highs": solve_highs}
MIN_PHASE_SECONDS = 0.2  # the secondary objective is skipped with less time than this left


@dataclass(frozen=True)
class SolveResult(SolverResult):
    """The attainment objective's `status` (solvers.result.Status: optimal, feasible, timeout,
    interrupted, infeasible); `objective` and `bound` count SLO-met requests (bulk groups weigh
    their size); `bound` is the solver's proven bound, or the trivial one (every request) when it
    proved none. The secondary objective (unfinished request-slots within the horizon, lower is
    better) is optimized second with attainment fixed: `secondary_status` says whether that was
    proven (optimal), cut short (timeout, interrupted) or not run for lack of time (skipped);
    `secondary` is the value of the returned schedule either way."""

    backend: str = "cpsat"
    schedule: Schedule | None = None
    assignment: Assignment | None = None
    secondary: int | None = None
    secondary_status: Status | None = None
    horizon: int = 0
    stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"status": str(self.status), "objective": self.objective, "bound": self.bound, "gap": self.gap,
                "seconds": self.seconds, "backend": self.backend, "secondary": self.secondary,
                "secondary_status": None if self.secondary_status is None else str(self.secondary_status),
                "horizon": self.horizon, "stats": self.stats}


def solve(instance: Instance, backend: str = "cpsat", time_limit: float = 60.0,
          hint: Schedule | Assignment | None = None, *, qoe_threshold: float = DEFAULT_QOE_THRESHOLD,
          secondary: bool = True, min_attainment: int | None = None, workers: int = 2,
          model: str = "auto", cpsat_formulation: str = "tokens") -> SolveResult:
    """Solve the hindsight problem exactly (see formulations/exact/hindsight.py for the semantics).

    `time_limit`: seconds > 0, finite, for both phases together. `model`: "auto" (compact when
    the token budget can never bind, else general), "general", "compact". `cpsat_formulation`:
    "tokens" (CP-SAT on the compact model uses the token-indexed scheduling formulation,
    solvers/exact/tokens.py) or "slots" (the shared slot-indexed one). Lexicographic: first
    maximize attainment within `time_limit`; if time is left, minimize the secondary objective
    with attainment >= the value found. `min_attainment` adds attainment >= value (then
    "infeasible" says that value is unreachable). SIGINT/SIGTERM stop it within a second or so
    (status interrupted) when called from the main thread.
    """
    if backend not in BACKENDS:
        raise ValidationError(f"backend={backend!r}; valid: {', '.join(BACKENDS)}")
    if cpsat_formulation not in ("tokens", "slots"):
        raise ValidationError(f"cpsat_formulation={cpsat_formulation!r}; valid: tokens, slots")
    time_limit = check_time_limit(time_limit)
    if instance.engine.preemption != "recompute":
        raise ValidationError(f"engine: preemption={instance.engine.preemption!r}: the exact model covers "
                              "recompute preemption only (swap is not modelled)")
    with interruptible() as stop:
        result = _solve(instance, backend, time_limit, hint, qoe_threshold, secondary, min_attainment, workers,
                        model, cpsat_formulation, stop)
    if stop.requested:
        result.stats["signal"] = stop.signal_name
    return result


def _solve(instance: Instance, backend: str, time_limit: float, hint, qoe_threshold: float, secondary: bool,
           min_attainment: int | None, workers: int, model: str, cpsat_formulation: str,
           stop: StopToken) -> SolveResult:
    start = time.perf_counter()
    deadline = start + time_limit
    hm = build_model(instance, qoe_threshold=qoe_threshold, kind=model)
    start_values = warm_start(instance, hm, hint)
    floor = max(hm.attainment(start_values) if start_values is not None else 0, min_attainment or 0)
    if floor:
        hm.model.add(hm.attainment_terms(), ">=", int(floor))
    use_tokens = backend == "cpsat" and hm.kind == "compact" and cpsat_formulation == "tokens"
    stats = {"variables": hm.model.num_vars, "constraints": len(hm.model.constraints),
             "build_seconds": time.perf_counter() - start, "hint_used": start_values is not None,
             "time_scale": hm.scale, "model": "tokens" if use_tokens else hm.kind}
    left = max(0.1, deadline - time.perf_counter())
    if use_tokens:
        phase = tokens.solve_attainment(hm, left, start_values, workers, floor, stop, stats.setdefault("probes", []))
    else:
        phase = _LINEAR_BACKENDS[backend](hm, left, start_values, workers, stop)
    stats["attainment_seconds"] = time.perf_counter() - start
    values = phase.values
    if values is None and phase.status.stopped_early and start_values is not None:
        values = start_values  # nothing better found in time: the warm start is the best schedule known
    trivial = sum(hm.weight.values())
    if values is None:
        bound = max(floor - 1, 0) if phase.status == Status.INFEASIBLE else _proven(phase.bound, trivial)
        return SolveResult(phase.status, None, bound, time.perf_counter() - start, backend, horizon=hm.horizon,
                           stats=stats)
    objective = hm.attainment(values)
    bound = objective if phase.status == Status.OPTIMAL else _proven(phase.bound, trivial)
    secondary_status = None
    if secondary:
        secondary_status, values = _secondary(hm, backend, use_tokens, deadline, values, objective, workers, stop)
    assignment, schedule = engine_schedule(hm, values, {"policy": f"exact-{backend}", "status": str(phase.status)})
    return SolveResult(phase.status, objective, bound, time.perf_counter() - start, backend, schedule, assignment,
                       hm.unfinished_slots(values), secondary_status, hm.horizon, stats)


def engine_schedule(hm: HindsightModel, values: list[int], meta: dict) -> tuple[Assignment, Schedule]:
    """A model point as an engine schedule (played by the engine rules, so a point the engine
    cannot follow fails loudly)."""
    assignment = decode(hm, values)
    played = play(hm.instance, assignment, hm.horizon)
    if not played.feasible:
        raise AssertionError(f"solver solution is not an engine schedule: {played.problem}")
    return assignment, to_schedule(hm.instance, played, hm.tau, meta=meta)


def warm_start(instance: Instance, hm: HindsightModel, hint) -> list[int] | None:
    """The hint as a full model point, or None when it is not a feasible one."""
    if hint is None:
        return None
    assignment = hint if isinstance(hint, Assignment) else assignment_from_schedule(instance, hint)
    played = play(instance, assignment, hm.horizon)
    if not played.feasible:
        return None
    values = model_values(hm, played)
    return None if hm.model.check(values) else values


def _secondary(hm: HindsightModel, backend: str, use_tokens: bool, deadline: float, values: list[int],
               objective: int, workers: int, stop: StopToken) -> tuple[Status, list[int]]:
    """Minimize unfinished request-slots with attainment >= objective; the better point and its status."""
    left = deadline - time.perf_counter()
    if stop.requested or left <= MIN_PHASE_SECONDS:
        return Status.SKIPPED, values
    if use_tokens:
        phase = tokens.solve_secondary(hm, left, values, workers, objective, stop)
    else:
        hm.model.add(hm.attainment_terms(), ">=", objective)
        hm.model.objective = hm.secondary_terms()
        phase = _LINEAR_BACKENDS[backend](hm, left, values, workers, stop)
    if phase.values is not None and hm.attainment(phase.values) >= objective:
        return phase.status, phase.values
    return phase.status, values


def _proven(raw_bound: float | None, trivial: int) -> int:
    """Attainment is an integer: a solver bound of 7.0000001 proves 7; no solver bound: every request."""
    if raw_bound is None:
        return trivial
    return min(trivial, int(math.floor(raw_bound + 1e-6)))


