"""One window of the schedule re-optimized exactly with CP-SAT (the move of solvers/search/windows.py).

A window is a time range [t0, t1) and the *free* requests: those released in it (a bulk group
whole, if any member is). Every other request is fixed as the incumbent ran it, so the KV
blocks, batch tokens and sequences it used in each iteration are constants that lower the
capacity left to the free ones. Time is cut into slots of `tau` seconds: the engine's slot time
in slotted mode, the incumbent's mean iteration time in the window in timed mode (there the
model is an approximation of the engine; the caller replays every plan, and the replayed score
is what counts).

The free requests are scheduled as in the token-indexed compact model (solvers/exact/tokens.py),
with runs of consecutive tokens as tasks so that a 1,000-token stream is a handful of intervals:
task 0 delivers token 1 after the whole prefill (ceil(P / token_budget) slots, P tokens, the
prompt's blocks), task c >= 1 delivers a run of decode tokens in consecutive slots, holding the
blocks of its last token (its peak) and one batch token per slot. Tasks of a request follow each
other; a request holds no KV between tasks (recompute). A request is present iff its SLO unit is
met: throughput and bulk tokens by their latest times (formulations/bounds/windows.py: the
deadline, less the fastest run of a bulk member's DAG descendants), a DAG child after its
parents, and a stream's QoE through its lateness recursion, bounded from above per task by the
lateness at the task's first or last token (lateness is linear in the token within a run), so a
plan that meets its streams' QoE in the model meets it at the planned times.

Maximize the SLO-met weight of the window, warm-started from the incumbent (hints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from formulations.bounds.windows import TokenWindows
from formulations.instance import Instance
from formulations.metrics import DEFAULT_QOE_THRESHOLD
from formulations.qoe import whole_area
from formulations.schedule import Schedule
from solvers.exact.cpsat import run_cpsat
from solvers.interrupt import StopToken
from solvers.result import Status
from formulations.arithmetic import ceil_div

MAX_TASKS = 5  # tasks per request: token 1 and up to 4 runs of decode tokens
MAX_PROFILE_STEPS = 400  # the fixed requests' usage is a step function of at most this many steps
TICKS = 1_000_000  # lateness in microseconds


@dataclass(frozen=True)
class Window:
    t0: float  # seconds: slot k is [t0 + k tau, t0 + (k + 1) tau)
    tau: float
    slots: int  # horizon of the window model
    free: np.ndarray  # request indices re-optimized


@dataclass(frozen=True)
class WindowPlan:
    status: Status
    met_weight: int  # SLO-met weight of the free requests in the plan
    hint_weight: int  # ... in the incumbent (the hint)
    token_times: dict[int, np.ndarray]  # free request -> planned delivery time of each token (met ones)
    dropped: np.ndarray  # free requests the plan does not serve


@dataclass
class _Task:
    first: int  # 0-based index of the task's first token
    length: int  # slots (tokens for decode runs; prefill chunks for task 0)
    kv: int
    tokens: int  # batch tokens per slot
    lo: int
    hi: int  # start slot range


def usage_profile(instance: Instance, schedule: Schedule, fixed: np.ndarray, window: Window) -> np.ndarray:
    """(slots, 3) KV blocks, batch tokens and sequences the fixed requests use in each slot of
    the window, as the incumbent ran them (a request holds KV from each admission to its next
    preemption or its finish, blocks_for(P + tokens delivered))."""
    spec = instance.engine
    table = instance.table
    edges = window.t0 + window.tau * np.arange(window.slots + 1)
    mid = edges[:-1] + window.tau / 2
    use = np.zeros((window.slots, 3))
    end_t = edges[-1]
    for i in fixed.tolist():
        tl = schedule.timelines[i]
        times = tl.token_times
        if not len(tl.admissions) or tl.admissions[0] >= end_t or (tl.finish is not None and tl.finish < window.t0):
            continue
        stops = sorted(tl.preemptions) + [tl.finish if tl.finish is not None else math.inf]
        for adm in tl.admissions:
            stop = min(s for s in stops if s >= adm) if any(s >= adm for s in stops) else math.inf
            a, b = np.searchsorted(mid, [adm, stop])
            if a >= b:
                continue
            held = table.prompt_len[i] + np.searchsorted(times, mid[a:b], side="right")
            use[a:b, 0] += ceil_div(held, spec.block_size)
            use[a:b, 2] += 1
        delivered = np.searchsorted(edges, times, side="left") - 1
        delivered = delivered[(delivered >= 0) & (delivered < window.slots)]
        np.add.at(use[:, 1], delivered, 1)
    return use


def solve_window(instance: Instance, windows: list[TokenWindows], unit: np.ndarray, weight: np.ndarray,
                 incumbent: Schedule, met_units: np.ndarray, window: Window, usage: np.ndarray,
                 time_limit: float, stop: StopToken, workers: int = 2,
                 qoe_threshold: float = DEFAULT_QOE_THRESHOLD) -> WindowPlan:
    """The best plan of the free requests within `time_limit` (see the module docstring);
    `usage`: usage_profile of the fixed requests; `met_units`: the incumbent's met flag per unit."""
    spec = instance.engine
    table = instance.table
    model = cp_model.CpModel()
    units = sorted(set(unit[window.free].tolist()))
    met = {u: model.NewBoolVar(f"met{u}") for u in units}
    kv_iv, kv_d, tok_d, seq_iv = [], [], [], []
    starts: dict[int, list[tuple[_Task, cp_model.IntVar]]] = {}
    for i in window.free.tolist():
        tasks = _tasks(instance, windows[i], i, window)
        lit = met[unit[i]]
        if tasks is None:
            model.Add(lit == 0)
            continue
        chain = []
        for c, task in enumerate(tasks):
            s = model.NewIntVar(task.lo, task.hi, f"s{i}_{c}")
            if chain:
                prev_task, prev = chain[-1]
                model.Add(s >= prev + prev_task.length)
            iv = model.NewOptionalFixedSizeIntervalVar(s, task.length, lit, f"iv{i}_{c}")
            kv_iv.append(iv)
            kv_d.append(task.kv)
            tok_d.append(task.tokens)
            seq_iv.append(iv)
            chain.append((task, s))
        starts[i] = chain
        if table.cls[i] == 0:
            _qoe(model, instance, i, chain, lit, window, qoe_threshold)
    for i, chain in starts.items():
        for p in table.parents[i].tolist():
            if p in starts:
                last_task, last = starts[p][-1]
                model.Add(chain[0][1] >= last + last_task.length).OnlyEnforceIf(met[unit[i]])
    caps = np.array([spec.kv_blocks, spec.token_budget, spec.max_seqs], dtype=np.int64)
    fixed_iv, fixed_use = _fixed_steps(model, usage, caps)
    model.AddCumulative(kv_iv + fixed_iv, kv_d + [u[0] for u in fixed_use], int(caps[0]))
    model.AddCumulative(kv_iv + fixed_iv, tok_d + [u[1] for u in fixed_use], int(caps[1]))
    model.AddCumulative(seq_iv + fixed_iv, [1] * len(seq_iv) + [u[2] for u in fixed_use], int(caps[2]))
    model.Maximize(sum(int(weight[u]) * met[u] for u in units))
    _hint(model, incumbent, met, met_units, starts, window)
    solver, status = run_cpsat(model, time_limit, workers, stop)
    hint_weight = int(sum(weight[u] for u in units if met_units[u]))
    if status == Status.INFEASIBLE or solver.ResponseProto().status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return WindowPlan(status, 0, hint_weight, {}, np.empty(0, dtype=np.int64))
    times: dict[int, np.ndarray] = {}
    dropped = []
    for i in window.free.tolist():
        if i not in starts or not solver.Value(met[unit[i]]):
            dropped.append(i)
            continue
        times[i] = _token_times(starts[i], solver, window, int(table.output_len[i]))
    met_weight = int(sum(weight[u] for u in units if solver.Value(met[u])))
    return WindowPlan(status, met_weight, hint_weight, times, np.array(dropped, dtype=np.int64))


def _tasks(instance: Instance, tw: TokenWindows, i: int, window: Window) -> list[_Task] | None:
    """Task 0 (prefill, token 1) and up to MAX_TASKS - 1 decode runs, with their start ranges;
    None when the request cannot meet its SLO within the window's slots."""
    spec = instance.engine
    P = int(instance.table.prompt_len[i])
    n = int(instance.table.output_len[i])
    chunks = ceil_div(P, spec.token_budget)
    release = max(0, math.ceil((tw.release - window.t0) / window.tau - 1e-9))
    # token j (0-based) is delivered at the end of its slot: slot <= (latest_j - t0) / tau - 1
    last_slot = np.floor((tw.latest - window.t0) / window.tau + 1e-9).astype(np.float64) - 1
    last_slot = np.minimum(last_slot, window.slots - 1)
    tasks = [_Task(0, chunks, spec.blocks_for(P), min(P, spec.token_budget), release, int(last_slot[0]) - chunks + 1)]
    runs = min(n - 1, MAX_TASKS - 1)
    bounds = np.linspace(1, n, runs + 1).round().astype(int) if runs else np.array([1])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        length = int(b - a)
        offsets = np.arange(length)
        hi = int(np.min(last_slot[a:b] - offsets))
        tasks.append(_Task(int(a), length, spec.blocks_for(P + int(b) - 1), 1, 0, hi))
    lo = 0
    for task in tasks:
        task.lo = max(task.lo, lo)
        lo = task.lo + task.length
    if any(t.hi < t.lo for t in tasks):
        return None
    return tasks


def _qoe(model: cp_model.CpModel, instance: Instance, i: int, chain, lit, window: Window, q: float) -> None:
    """QoE >= q of stream i at its planned slots: lateness (us) of each task bounds that of its
    tokens (module docstring), running maximum, sum over tokens <= (1-q) S_whole."""
    r = instance.requests[i]
    n = r.output_len
    ideal1 = r.arrival + r.ttft_target - window.t0
    rinv = 1.0 / r.read_rate
    budget = int((1 - q) * whole_area(n, r.read_rate) * TICKS)
    tau_t = math.ceil(window.tau * TICKS)
    top = (window.slots + 1) * tau_t
    prev = None
    total = []
    for task, s in chain:
        late = model.NewIntVar(0, top, f"late{i}_{task.first}")
        first_tok = task.first
        last_tok = task.first + (task.length - 1 if task.first else 0)
        end_first = task.length if task.first == 0 else 1
        for tok, slot_end in ((first_tok, end_first), (last_tok, task.length)):
            ideal_t = math.floor((ideal1 + tok * rinv) * TICKS)
            model.Add(late >= (s + slot_end) * tau_t - ideal_t)
        if prev is not None:
            model.Add(late >= prev)
        prev = late
        total.append((late, 1 if task.first == 0 else task.length))
    model.Add(sum(c * v for v, c in total) <= budget).OnlyEnforceIf(lit)


def _fixed_steps(model: cp_model.CpModel, usage: np.ndarray, caps: np.ndarray):
    """The fixed usage as at most MAX_PROFILE_STEPS fixed intervals, each at the maximum of its
    slots (never below the real use), capped at the capacity."""
    slots = len(usage)
    step = max(1, ceil_div(slots, MAX_PROFILE_STEPS))
    ivs, uses = [], []
    for a in range(0, slots, step):
        b = min(slots, a + step)
        peak = np.minimum(usage[a:b].max(axis=0), caps).astype(np.int64)
        if peak.any():
            ivs.append(model.NewIntervalVar(a, b - a, b, f"fixed{a}"))
            uses.append(peak.tolist())
    return ivs, uses


def _hint(model: cp_model.CpModel, incumbent: Schedule, met, met_units, starts, window: Window) -> None:
    for u, lit in met.items():
        model.AddHint(lit, bool(met_units[u]))
    for i, chain in starts.items():
        times = incumbent.timelines[i].token_times
        for task, s in chain:
            if task.first < len(times):
                slot = math.ceil((times[task.first] - window.t0) / window.tau - 1e-9) - (task.length if task.first == 0 else 1)
                model.AddHint(s, int(min(max(slot, task.lo), task.hi)))


def _token_times(chain, solver: cp_model.CpSolver, window: Window, n: int) -> np.ndarray:
    """Planned delivery time of every token: end of the slot that delivers it."""
    out = np.empty(n)
    for task, s in chain:
        start = solver.Value(s)
        if task.first == 0:
            out[0] = window.t0 + (start + task.length) * window.tau
        else:
            k = np.arange(task.length)
            out[task.first:task.first + task.length] = window.t0 + (start + k + 1) * window.tau
    return out
