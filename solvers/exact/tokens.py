"""CP-SAT on the compact model indexed by token instead of by slot: a scheduling model.

Valid in the same regime and by the same dominance facts as formulations/exact/compact.py
(the token budget can never bind): request i delivers its t-th token in slot s_it, one token
per slot it runs, and while it runs for token t it holds blocks_for(P + t - 1) KV blocks. So
each request is a chain of n unit tasks (s_i,t+1 >= s_it + 1) inside its window
[release, last relevant slot], present only if its SLO is met (dropped otherwise), and the KV
cache and max_seqs are two cumulative resources over all present tasks. That is the structure
CP-SAT's scheduling propagators (timetabling, energetic reasoning) are built for, and it has
about n variables per request instead of several per slot.

Latency: lateness of token t is L_t = max(L_{t-1}, (s_t + 1) tau - ideal_t, 0) and QoE >= q iff
sum_t L_t <= (1-q) S_whole, in the same integer ticks as the slot-indexed models.
The objective and the secondary objective are those of the slot-indexed compact model, so both
report the same numbers for the same schedule; solutions are mapped back to a full point of the
slot-indexed compact model (and checked against it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from formulations.exact.assignment import decode, model_values, play
from formulations.exact.hindsight import HindsightModel, interchangeable_requests
from formulations.exact.slots import last_slot_by
from formulations.requests import RequestClass
from solvers.exact.cpsat import cpsat_bound, has_solution, run_cpsat
from solvers.exact.phase import Phase
from solvers.interrupt import StopToken
from solvers.result import Status


@dataclass
class TokenModel:
    model: cp_model.CpModel
    met: dict[str, cp_model.IntVar]
    slots: list[list[cp_model.IntVar]]  # per request: slot of each token (meaningful when met)
    secondary: cp_model.LinearExpr | int = 0  # unfinished request-slots within the windows
    attainment: cp_model.LinearExpr | int = 0
    windows: list[tuple[int, int]] = field(default_factory=list)  # per request (start, end) inclusive, or (0, -1)


def build_tokens(hm: HindsightModel, only: frozenset[int] | None = None, order_met: bool = True) -> TokenModel:
    """The token-indexed CP-SAT model of the instance behind the compact model `hm` (same windows,
    met keys, weights and time ticks).

    `only`: model just these requests (indices; whole bulk groups), the others dropped (met 0,
    no tasks), which is exact by dominance 2 of compact.py. `order_met=False` leaves out the
    symmetry rule "of interchangeable requests the met ones come first", so met literals can
    be assumed freely (a feasibility check of any chosen set)."""
    if hm.kind != "compact":
        raise ValueError("the token-indexed model needs the compact regime (token budget that never binds)")
    inst = hm.instance
    spec = inst.engine
    model = cp_model.CpModel()
    met = {key: model.NewBoolVar(f"met_{key}") for key in hm.met}
    for key, var in hm.met.items():
        if hm.model.ub[var] == 0:
            model.Add(met[key] == 0)
    if only is not None:
        for i, r in enumerate(inst.requests):
            if i not in only:
                model.Add(met[_key(r)] == 0)
    tau_t = round(hm.tau * hm.scale)
    kv_intervals, kv_demands, seq_intervals = [], [], []
    slots: list[list[cp_model.IntVar]] = []
    windows = []
    secondary_terms = []
    for i, (r, v) in enumerate(zip(inst.requests, hm.req, strict=True)):
        lit = met[_key(r)]
        n, P = r.output_len, r.prompt_len
        if not v.x or (only is not None and i not in only):
            slots.append([])
            windows.append((0, -1))
            continue
        start, end = v.start, v.start + len(v.x) - 1
        windows.append((start, end))
        latest = [end - (n - 1 - t) for t in range(n)]
        if r.cls is RequestClass.LATENCY:
            # each token's own lateness is at most the whole delay budget B: (s_t + 1) tau - ideal_t <= B
            budget = (1 - hm.qoe_threshold) * n * (n + 1) / (2 * r.read_rate)
            for t in range(n):
                ideal_t = r.arrival + r.ttft_target + t / r.read_rate
                latest[t] = max(start + t, min(latest[t], last_slot_by(ideal_t + budget, hm.tau)))
        s = [model.NewIntVar(start + t, latest[t], f"s{i}_{t}") for t in range(n)]
        slots.append(s)
        for t in range(n):
            if t:
                model.Add(s[t] >= s[t - 1] + 1)
            model.Add(s[t] == start + t).OnlyEnforceIf(lit.Not())  # a dropped request: one canonical value
            iv = model.NewOptionalFixedSizeIntervalVar(s[t], 1, lit, f"iv{i}_{t}")
            kv_intervals.append(iv)
            kv_demands.append(spec.blocks_for(P + t))
            seq_intervals.append(iv)
        # unfinished slots within the window: (finish - start + 1) if met, the window length if not
        unfinished = model.NewIntVar(n, end - start + 1, f"unfinished{i}")
        model.Add(unfinished == s[-1] - start + 1).OnlyEnforceIf(lit)
        model.Add(unfinished == end - start + 1).OnlyEnforceIf(lit.Not())
        secondary_terms.append(unfinished)
        if r.cls is RequestClass.LATENCY:
            _latency(model, hm, r, s, lit, tau_t, end)
    model.AddCumulative(kv_intervals, kv_demands, spec.kv_blocks)
    if spec.max_seqs < len(inst.requests):
        model.AddCumulative(seq_intervals, [1] * len(seq_intervals), spec.max_seqs)
    for i in range(len(inst.requests)):
        for p in inst.table.parents[i]:
            if slots[i] and slots[p]:
                key = f"g:{inst.requests[i].group}"
                model.Add(slots[i][0] >= slots[p][-1] + 1).OnlyEnforceIf(met[key])
    _symmetry(model, hm, slots, met, order_met)
    attainment = sum(hm.weight[k] * met[k] for k in met)
    return TokenModel(model, met, slots, sum(secondary_terms), attainment, windows)


def _latency(model: cp_model.CpModel, hm: HindsightModel, r, s: list, lit, tau_t: int, end: int) -> None:
    n = r.output_len
    scale = hm.scale
    ideal1_t = round((r.arrival + r.ttft_target) * scale)
    rinv_t = round(scale / r.read_rate)
    budget_t = int((1 - hm.qoe_threshold) * n * (n + 1) / (2 * r.read_rate) * scale + 1e-6)
    top = max(0, (end + 1) * tau_t - ideal1_t)
    lateness = []
    for t in range(n):
        late = model.NewIntVar(0, top, f"late{r.id}_{t}")
        model.Add(late >= (s[t] + 1) * tau_t - ideal1_t - t * rinv_t)
        if t:
            model.Add(late >= lateness[-1])
        lateness.append(late)
    model.Add(sum(lateness) <= budget_t).OnlyEnforceIf(lit)


def _key(r) -> str:
    return f"g:{r.group}" if r.group is not None else f"r:{r.id}"


def _symmetry(model: cp_model.CpModel, hm: HindsightModel, slots, met, order_met: bool) -> None:
    """Interchangeable requests: met ones first (by index; unless not `order_met`), and when both
    are met they finish in index order."""
    inst = hm.instance
    for members in interchangeable_requests(inst):
        members = [i for i in members if slots[i]]
        for a, b in zip(members, members[1:]):
            ma, mb = met[_key(inst.requests[a])], met[_key(inst.requests[b])]
            if order_met:
                model.Add(ma >= mb)
            model.Add(slots[a][-1] <= slots[b][-1]).OnlyEnforceIf([ma, mb])


def solve_attainment(hm: HindsightModel, time_limit: float, start_values: list[int] | None, workers: int,
                     floor: int, stop: StopToken, probes: list[dict]) -> Phase:
    """Maximize attainment, top-down.

    CP-SAT proves "every live request met" infeasible far sooner than it climbs from the warm
    start and closes the gap (tight KV: 20x100 at 12% KV, optimum 19 of 20, was not proven in
    60 s; "attainment >= 20" is proven infeasible in 5 s, ">= 19" solved in 1.5 s). So first
    probe attainment >= ub, lowering ub by one on each proof of infeasibility, with half the
    time left per probe; a probe that finds a schedule found an optimum (its value >= ub). A
    probe that stops early hands the rest of the time to the plain maximization, whose bound is
    then capped by the proven ub. Each probe is logged in `probes` (target, outcome, seconds)."""
    deadline = time.perf_counter() + time_limit
    ub = sum(w for k, w in hm.weight.items() if hm.model.ub[hm.met[k]] != 0)
    while ub > floor and not stop.requested:
        left = deadline - time.perf_counter()
        if left < 0.5:
            break
        t0 = time.perf_counter()
        phase = _solve_once(hm, left / 2, start_values, workers, ub, stop, maximize=True, cap=ub)
        probes.append({"target": ub, "outcome": str(phase.status), "seconds": round(time.perf_counter() - t0, 2)})
        if phase.status == Status.INFEASIBLE:
            ub -= 1
            continue
        if phase.values is not None:
            return Phase(Status.OPTIMAL, phase.values, ub)
        break
    if ub < floor:
        return Phase(Status.INFEASIBLE, None, None)
    if ub <= floor and start_values is not None and hm.attainment(start_values) >= ub:
        return Phase(Status.OPTIMAL, start_values, ub)
    if stop.requested:
        return Phase(Status.INTERRUPTED, None, ub)
    left = deadline - time.perf_counter()
    phase = _solve_once(hm, max(0.1, left), start_values, workers, floor, stop, maximize=True, cap=ub)
    if phase.status == Status.INFEASIBLE:
        return phase
    bound = ub if phase.bound is None else min(phase.bound, ub)
    status = phase.status
    if phase.values is not None and hm.attainment(phase.values) >= bound:
        status = Status.OPTIMAL
    return Phase(status, phase.values, bound)


def solve_all_met(hm: HindsightModel, time_limit: float, start_values: list[int] | None, workers: int,
                  stop: StopToken, seed: int = 0) -> Phase:
    """Can every live request of `hm` be met at once? A pure feasibility model (every met literal
    fixed to 1, no objective): where a set is hard to meet, CP-SAT's optimizing search spends its
    time on schedules that drop a request, and the top-down probe on attainment >= all still
    carries the symmetry order and the objective. `start_values` (a full compact-model point,
    e.g. a policy's, meeting some of them) are hints. Optimal with the point, infeasible, or
    stopped early (timeout, interrupted) with none."""
    tm = build_tokens(hm, order_met=False)
    for key, lit in tm.met.items():
        if hm.model.ub[hm.met[key]] != 0:
            tm.model.Add(lit == 1)
    if start_values is not None:
        _hint(hm, tm, start_values)
    solver, status = run_cpsat(tm.model, time_limit, workers, stop, seed)
    if status != Status.OPTIMAL:
        return Phase(status, None, None)
    met_slots = {i: [solver.Value(var) for var in tm.slots[i]] for i in range(len(hm.instance.requests))
                 if tm.slots[i]}
    return Phase(status, compact_point(hm, met_slots), None)


def solve_secondary(hm: HindsightModel, time_limit: float, start_values: list[int], workers: int, floor: int,
                    stop: StopToken) -> Phase:
    """Minimize the unfinished request-slots with attainment >= floor (bound: None, not reported)."""
    phase = _solve_once(hm, time_limit, start_values, workers, floor, stop, maximize=False)
    return Phase(phase.status, phase.values, None)


def _solve_once(hm: HindsightModel, time_limit: float, start_values: list[int] | None, workers: int, floor: int,
                stop: StopToken, *, maximize: bool, cap: int | None = None) -> Phase:
    tm = build_tokens(hm)
    model = tm.model
    if floor:
        model.Add(tm.attainment >= floor)
    if cap is not None:
        model.Add(tm.attainment <= cap)
    if maximize:
        model.Maximize(tm.attainment)
    else:
        model.Minimize(tm.secondary)
    if start_values is not None:
        _hint(hm, tm, start_values)
    solver, status = run_cpsat(model, time_limit, workers, stop)
    if status == Status.INFEASIBLE:
        return Phase(status, None, None)
    if not has_solution(solver, status):
        return Phase(status, None, cpsat_bound(solver))
    met_slots = {i: [solver.Value(var) for var in tm.slots[i]] for i, r in enumerate(hm.instance.requests)
                 if tm.slots[i] and solver.Value(tm.met[_key(r)])}
    return Phase(status, compact_point(hm, met_slots), cpsat_bound(solver))


def _hint(hm: HindsightModel, tm: TokenModel, start_values: list[int]) -> None:
    for key, var in hm.met.items():
        tm.model.AddHint(tm.met[key], start_values[var])
    for i, v in enumerate(hm.req):
        ran = [k for t, k in enumerate(v.slots()) if start_values[v.x[t]]]
        if len(ran) == len(tm.slots[i]):
            for var, k in zip(tm.slots[i], ran, strict=True):
                tm.model.AddHint(var, k)


def compact_point(hm: HindsightModel, met_slots: dict[int, list[int]]) -> list[int]:
    """A token-model solution (the slot of each token of every met request, by request index)
    as a full, checked point of the slot-indexed compact model."""
    x_values = list(hm.model.lb)
    for i, slots in met_slots.items():
        v = hm.req[i]
        for k in slots:
            x_values[v.x[k - v.start]] = 1
    played = play(hm.instance, decode(hm, x_values), hm.horizon)
    values = model_values(hm, played)
    problems = hm.model.check(values)
    if not played.feasible or problems:
        raise AssertionError(f"token-model solution is not a compact-model point: {played.problem or problems[:3]}")
    return values
