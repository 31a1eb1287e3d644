"""`solve(instance, backend, time_limit, hint)`: the hindsight optimum of a slotted instance.

One model (formulations.exact.hindsight) is built once and handed to CP-SAT, CBC or HiGHS.
A warm start (a heuristic `Schedule` with its iteration log, or an `Assignment`) is played by
the engine rules into a full model point: CP-SAT gets it as hints, the MILPs as a MIP start,
and its attainment becomes a cut (attainment >= the hint's). A time limit never raises: the
result carries the best schedule found (if any) and the proven bound.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pulp
from ortools.sat.python import cp_model

from formulations.exact.assignment import Assignment, assignment_from_schedule, decode, model_values, play, to_schedule
from formulations.exact.cpsat import add_hint, to_cpsat
from formulations.exact.build import build_model
from formulations.exact.hindsight import HindsightModel
from formulations.exact.milp import set_start, to_milp
from formulations.exact.tokens import build_tokens
from formulations.instance import Instance
from formulations.metrics import DEFAULT_QOE_THRESHOLD
from formulations.requests import ValidationError
from formulations.schedule import Schedule

BACKENDS = ("cpsat", "cbc", "highs")


@dataclass
class SolveResult:
    """`status` (of the attainment objective): optimal | feasible (stopped early, not by time) |
    timeout (time limit hit: the best schedule found so far, or None) | infeasible.
    `objective` and `bound` count SLO-met requests (bulk groups weigh their size);
    `gap` = (bound - objective) / max(bound, 1). The secondary objective (unfinished
    request-slots within the horizon, lower is better) is optimized second, with attainment
    fixed: `secondary_status` says whether that was proven too."""

    status: str
    objective: int | None
    bound: int
    gap: float | None
    seconds: float
    backend: str
    schedule: Schedule | None
    assignment: Assignment | None
    secondary: int | None = None
    secondary_status: str | None = None
    horizon: int = 0
    stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"status": self.status, "objective": self.objective, "bound": self.bound, "gap": self.gap,
                "seconds": self.seconds, "backend": self.backend, "secondary": self.secondary,
                "secondary_status": self.secondary_status, "horizon": self.horizon, "stats": self.stats}


def solve(instance: Instance, backend: str = "cpsat", time_limit: float = 60.0,
          hint: Schedule | Assignment | None = None, *, qoe_threshold: float = DEFAULT_QOE_THRESHOLD,
          secondary: bool = True, min_attainment: int | None = None, workers: int = 2,
          model: str = "auto", cpsat_formulation: str = "tokens") -> SolveResult:
    """Solve the hindsight problem exactly (see formulations/exact/hindsight.py for the semantics).

    `model`: "auto" (compact when the token budget can never bind, else general), "general",
    "compact". `cpsat_formulation`: "tokens" (CP-SAT on the compact model uses the token-indexed
    scheduling formulation, formulations/exact/tokens.py) or "slots" (the shared slot-indexed one).
    Lexicographic: first maximize attainment within `time_limit`; if time is left, minimize the
    secondary objective with attainment >= the value found. `min_attainment` adds attainment >=
    value (then "infeasible" says that value is unreachable).
    """
    if backend not in BACKENDS:
        raise ValidationError(f"backend={backend!r}; valid: {', '.join(BACKENDS)}")
    if cpsat_formulation not in ("tokens", "slots"):
        raise ValidationError(f"cpsat_formulation={cpsat_formulation!r}; valid: tokens, slots")
    if instance.engine.preemption != "recompute":
        raise ValidationError(f"engine: preemption={instance.engine.preemption!r}: the exact model covers "
                              "recompute preemption only (swap is not modelled)")
    start = time.perf_counter()
    deadline = start + time_limit
    hm = build_model(instance, qoe_threshold=qoe_threshold, kind=model)
    lm = hm.model
    start_values = None
    if hint is not None:
        assignment = hint if isinstance(hint, Assignment) else assignment_from_schedule(instance, hint)
        played = play(instance, assignment, hm.horizon)
        if played.feasible:
            start_values = model_values(hm, played)
            if lm.check(start_values):
                start_values = None
    floor = max(hm.attainment(start_values) if start_values is not None else 0, min_attainment or 0)
    if floor:
        lm.add(hm.attainment_terms(), ">=", int(floor))
    use_tokens = backend == "cpsat" and hm.kind == "compact" and cpsat_formulation == "tokens"
    stats = {"variables": lm.num_vars, "constraints": len(lm.constraints),
             "build_seconds": time.perf_counter() - start, "hint_used": start_values is not None,
             "time_scale": hm.scale, "model": "tokens" if use_tokens else hm.kind}

    def run(time_left: float, start_vals, floor_value: int, phase: str):
        if use_tokens:
            return _solve_tokens(hm, time_left, start_vals, workers, floor_value, phase, stats.setdefault("probes", []))
        if phase == "secondary":
            lm.add(hm.attainment_terms(), ">=", floor_value)
            lm.objective = hm.secondary_terms()
        solver = _solve_cpsat if backend == "cpsat" else _solve_milp
        return solver(hm, backend, time_left, start_vals, workers)

    status, values, raw_bound = run(max(0.1, deadline - time.perf_counter()), start_values, floor, "attainment")
    total = sum(hm.weight.values())
    stats["attainment_seconds"] = time.perf_counter() - start
    if values is None and status == "timeout" and start_values is not None:
        values = start_values  # nothing better found in time: the warm start is the best schedule known
    if values is None:
        bound = 0 if status == "infeasible" else total if raw_bound is None else min(total, _floor(raw_bound))
        return SolveResult(status, None, bound, None, time.perf_counter() - start, backend, None, None,
                           horizon=hm.horizon, stats=stats)
    objective = hm.attainment(values)
    bound = objective if status == "optimal" else total if raw_bound is None else min(total, _floor(raw_bound))
    bound = max(bound, objective)
    secondary_status = None
    left = deadline - time.perf_counter()
    if secondary and left > 0.2:
        sec_status, sec_values, _ = run(left, values, objective, "secondary")
        secondary_status = sec_status
        if sec_values is not None and hm.attainment(sec_values) >= objective:
            values = sec_values
            objective = hm.attainment(values)
    elif secondary:
        secondary_status = "timeout"
    assignment = decode(hm, values)
    played = play(instance, assignment, hm.horizon)
    if not played.feasible:
        raise AssertionError(f"solver solution is not an engine schedule: {played.problem}")
    schedule = to_schedule(instance, played, hm.tau, meta={"policy": f"exact-{backend}", "status": status})
    return SolveResult(status, objective, bound, (bound - objective) / max(bound, 1), time.perf_counter() - start,
                       backend, schedule, assignment, hm.unfinished_slots(values), secondary_status, hm.horizon, stats)


def _floor(raw_bound: float) -> int:
    """Attainment is an integer: a bound of 7.0000001 proves 7."""
    return int(math.floor(raw_bound + 1e-6))


def _solve_cpsat(hm: HindsightModel, backend: str, time_limit: float, start_values, workers: int):
    built = to_cpsat(hm.model)
    if start_values is not None:
        add_hint(built, start_values)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit)
    solver.parameters.num_workers = workers
    code = solver.Solve(built.model)
    if code == cp_model.INFEASIBLE:
        return "infeasible", None, None
    bound = solver.BestObjectiveBound()
    if code == cp_model.OPTIMAL:
        return "optimal", [solver.Value(v) for v in built.vars], bound
    if code == cp_model.FEASIBLE:
        return "timeout", [solver.Value(v) for v in built.vars], bound
    if code == cp_model.MODEL_INVALID:
        raise AssertionError(f"CP-SAT rejects the model: {built.model.Validate()}")
    return "timeout", None, bound


def _solve_tokens(hm: HindsightModel, time_limit: float, start_values, workers: int, floor: int, phase: str,
                  probes: list | None = None):
    """CP-SAT on the token-indexed formulation; the solution is mapped back to a full point of the
    slot-indexed compact model (and checked against it).

    Attainment phase, top-down: CP-SAT proves "every live request met" infeasible far sooner than
    it climbs from the warm start and closes the gap (tight KV: 20x100 at 12% KV, optimum 19 of
    20, was not proven in 60 s; "attainment >= 20" is proven infeasible in 5 s, ">= 19" solved in
    1.5 s). So first probe attainment >= ub, lowering ub by one on each proof of infeasibility,
    with half the time left per probe; a probe that finds a schedule found an optimum (its value
    >= ub). A probe that times out hands the rest of the time to the plain maximization, whose
    bound is then capped by the proven ub."""
    deadline = time.perf_counter() + time_limit
    if phase == "attainment":
        ub = sum(w for k, w in hm.weight.items() if hm.model.ub[hm.met[k]] != 0)
        while ub > floor:
            left = deadline - time.perf_counter()
            if left < 0.5:
                break
            t0 = time.perf_counter()
            code, values, _ = _tokens_once(hm, left / 2, start_values, workers, ub, phase, cap=ub)
            if probes is not None:
                probes.append({"target": ub, "outcome": code, "seconds": round(time.perf_counter() - t0, 2)})
            if code == "infeasible":
                ub -= 1
                continue
            if code == "optimal" or values is not None:
                return "optimal", values, ub
            break
        if ub <= floor and start_values is not None and hm.attainment(start_values) >= ub:
            return "optimal", start_values, ub
        if ub < floor:
            return "infeasible", None, None
        left = deadline - time.perf_counter()
        code, values, bound = _tokens_once(hm, max(0.1, left), start_values, workers, floor, phase, cap=ub)
        if code == "infeasible":
            return code, None, None
        bound = ub if bound is None else min(bound, ub)
        if values is not None and hm.attainment(values) >= bound:
            code = "optimal"
        return code, values, bound
    return _tokens_once(hm, time_limit, start_values, workers, floor, phase)


def _tokens_once(hm: HindsightModel, time_limit: float, start_values, workers: int, floor: int, phase: str,
                 cap: int | None = None):
    tm = build_tokens(hm)
    model = tm.model
    if floor:
        model.Add(tm.attainment >= floor)
    if cap is not None:
        model.Add(tm.attainment <= cap)
    if phase == "secondary":
        model.Minimize(tm.secondary)
    else:
        model.Maximize(tm.attainment)
    if start_values is not None:
        for key, var in hm.met.items():
            model.AddHint(tm.met[key], start_values[var])
        for i, v in enumerate(hm.req):
            ran = [k for t, k in enumerate(v.slots()) if start_values[v.x[t]]]
            if len(ran) == len(tm.slots[i]):
                for var, k in zip(tm.slots[i], ran, strict=True):
                    model.AddHint(var, k)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit)
    solver.parameters.num_workers = workers
    code = solver.Solve(model)
    if code == cp_model.INFEASIBLE:
        return "infeasible", None, None
    if code == cp_model.MODEL_INVALID:
        raise AssertionError(f"CP-SAT rejects the token model: {model.Validate()}")
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return "timeout", None, solver.BestObjectiveBound() if phase == "attainment" else None
    x_values = list(hm.model.lb)
    for i, v in enumerate(hm.req):
        key = f"g:{hm.instance.requests[i].group}" if hm.instance.requests[i].group is not None else f"r:{hm.instance.requests[i].id}"
        if solver.Value(tm.met[key]):
            for var in tm.slots[i]:
                x_values[v.x[solver.Value(var) - v.start]] = 1
    played = play(hm.instance, decode(hm, x_values), hm.horizon)
    values = model_values(hm, played)
    problems = hm.model.check(values)
    if not played.feasible or problems:
        raise AssertionError(f"token-model solution is not a compact-model point: {played.problem or problems[:3]}")
    bound = solver.BestObjectiveBound() if phase == "attainment" else None
    return ("optimal" if code == cp_model.OPTIMAL else "timeout"), values, bound


def _solve_milp(hm: HindsightModel, backend: str, time_limit: float, start_values, workers: int):
    built = to_milp(hm.model)
    prob = built.problem
    warm = start_values is not None
    if warm:
        set_start(built, start_values)
    if backend == "cbc":
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "cbc.log"
            with warnings.catch_warnings():  # deprecated for PuLP 4; we pin pulp < 4, which bundles CBC
                warnings.simplefilter("ignore", DeprecationWarning)
                solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=0, gapAbs=0.5, threads=workers,
                                           warmStart=warm, logPath=str(log))
            prob.solve(solver)
            text = log.read_text() if log.exists() else ""
        status, bound = _cbc_outcome(prob, text)
    else:
        solver = _Highs(msg=False, timeLimit=time_limit, gapRel=0, gapAbs=0.5, threads=workers,
                        start=start_values)
        with _quiet_stdout():  # HiGHS prints its banner from C++ even with output off
            prob.solve(solver)
        status, bound = _highs_outcome(prob)
    if status == "infeasible":
        return status, None, None
    values = None
    if prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        # PuLP leaves variables that no constraint mentions out of the MILP: they keep their lower bound
        values = [int(round(v.varValue)) if v.varValue is not None else lo
                  for v, lo in zip(built.vars, hm.model.lb, strict=True)]
        if hm.model.check(values):
            values = None
    if status == "optimal" and values is None:
        status = "timeout"
    return status, values, bound


def _cbc_outcome(prob: pulp.LpProblem, log: str) -> tuple[str, float | None]:
    if prob.status == pulp.LpStatusInfeasible or "Problem is infeasible" in log:
        return "infeasible", None
    stopped_on_time = "Stopped on time" in log or "time limit" in log.lower()
    bound = None
    match = re.search(r"Lower bound:\s*(-?[\d.eE+-]+)", log)
    if match:
        bound = -float(match.group(1))  # CBC minimizes the negated objective
    if prob.sol_status == pulp.LpSolutionOptimal and not stopped_on_time:
        return "optimal", pulp.value(prob.objective)
    return ("timeout" if stopped_on_time else "feasible"), bound


@contextlib.contextmanager
def _quiet_stdout():
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class _Highs(pulp.HiGHS):
    """PuLP's HiGHS with a MIP start (PuLP's highspy binding does not pass one)."""

    def __init__(self, start: list[int] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start = start

    def callSolver(self, lp: pulp.LpProblem) -> None:
        if self.start is not None:
            order = {v.name: k for k, v in enumerate(lp.variables())}
            values = [0.0] * len(order)
            for var in lp.variables():
                values[order[var.name]] = float(var.varValue if var.varValue is not None else 0)
            import highspy

            sol = highspy.HighsSolution()
            sol.col_value = values
            sol.value_valid = True
            lp.solverModel.setSolution(sol)
        lp.solverModel.run()


def _highs_outcome(prob: pulp.LpProblem) -> tuple[str, float | None]:
    import highspy

    h = prob.solverModel
    model_status = h.getModelStatus()
    info = h.getInfo()
    bound = -info.mip_dual_bound if math.isfinite(info.mip_dual_bound) else None
    if model_status == highspy.HighsModelStatus.kInfeasible:
        return "infeasible", None
    if model_status == highspy.HighsModelStatus.kOptimal:
        return "optimal", bound
    if model_status == highspy.HighsModelStatus.kTimeLimit:
        return "timeout", bound
    return "feasible", bound
