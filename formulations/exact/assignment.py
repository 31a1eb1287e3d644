"""A per-iteration assignment (what runs and what is preempted in each slot), and its meaning.

The exact model's solution is decoded into an `Assignment`; the ReplayPolicy feeds it to the
simulator; a heuristic run (simulator schedule with its iteration log) is turned into one to
warm-start the solvers. `play` applies an assignment by the engine's slotted rules
(formulations/online.py) and returns every model variable's value, so a hint is a complete,
checkable point of the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from formulations.exact.hindsight import HindsightModel
from formulations.instance import Instance
from formulations.schedule import RequestTimeline, Schedule


@dataclass
class Assignment:
    """Slot k (time k * slot_time): `run[k]` in plan order, `preempt[k]` before that."""

    slot_time: float
    run: list[list[int]] = field(default_factory=list)
    preempt: list[list[int]] = field(default_factory=list)

    @property
    def horizon(self) -> int:
        return len(self.run)

    def to_dict(self) -> dict:
        return {"slot_time": self.slot_time, "run": self.run, "preempt": self.preempt}


def decode(hm: HindsightModel, values: list[int]) -> Assignment:
    """The assignment of a model solution: full chunks and decodes first, the partial chunk last."""
    if hm.kind == "compact":
        return _decode_compact(hm, values)
    run: list[list[int]] = [[] for _ in range(hm.horizon)]
    partial: list[list[int]] = [[] for _ in range(hm.horizon)]
    preempt: list[list[int]] = [[] for _ in range(hm.horizon)]
    for i, v in enumerate(hm.req):
        for t, k in enumerate(v.slots()):
            if values[v.p[t]]:
                preempt[k].append(i)
            if values[v.x[t]]:
                (run if values[v.o[t]] else partial)[k].append(i)
    return Assignment(hm.tau, [r + p for r, p in zip(run, partial, strict=True)], preempt)


def _decode_compact(hm: HindsightModel, values: list[int]) -> Assignment:
    """Compact model: run what x says; keep paused requests resident unless the slot's KV would
    overflow, then preempt those needed furthest in the future first (the model charges no KV
    to paused requests, so preempting all of them always fits)."""
    spec = hm.instance.engine
    reqs = hm.instance.requests
    run: list[list[int]] = [[] for _ in range(hm.horizon)]
    for i, v in enumerate(hm.req):
        for t, k in enumerate(v.slots()):
            if values[v.x[t]]:
                run[k].append(i)
    next_runs: dict[int, list[int]] = {}
    for k in range(hm.horizon - 1, -1, -1):
        for i in run[k]:
            next_runs.setdefault(i, []).append(k)  # descending; pop() gives the next one
    preempt: list[list[int]] = [[] for _ in range(hm.horizon)]
    held: dict[int, int] = {}  # resident request -> tokens computed
    gen = [0] * len(reqs)
    for k in range(hm.horizon):
        running = run[k]
        for i in running:
            next_runs[i].pop()
        paused = [i for i in held if i not in running]
        total = sum(spec.blocks_for(reqs[i].prompt_len + gen[i]) for i in running)
        total += sum(spec.blocks_for(held[i]) for i in paused)
        paused.sort(key=lambda i: next_runs[i][-1] if next_runs.get(i) else hm.horizon + 1)
        while total > spec.kv_blocks:
            victim = paused.pop()
            preempt[k].append(victim)
            total -= spec.blocks_for(held.pop(victim))
        for i in running:
            held[i] = reqs[i].prompt_len + gen[i]
            gen[i] += 1
            if gen[i] == reqs[i].output_len:
                del held[i]  # freed with its last token
    return Assignment(hm.tau, run, preempt)


@dataclass
class Played:
    """Per request and slot (0..horizon-1): the engine state an assignment produces."""

    x: np.ndarray  # (n, H) bool ran
    o: np.ndarray  # delivered a token
    p: np.ndarray  # preempted
    u: np.ndarray  # tokens processed
    c: np.ndarray  # tokens computed after the slot (0 once finished)
    g: np.ndarray  # tokens delivered by the end of the slot
    feasible: bool
    problem: str = ""


def play(instance: Instance, assignment: Assignment, horizon: int) -> Played:
    """Apply the assignment slot by slot with the engine's rules for plans that fit in KV.

    A plan naming a request that cannot run (not released, finished) or that overflows the KV
    cache marks the result infeasible (with the reason) instead of guessing what the engine's
    fallback would do.
    """
    spec = instance.engine
    table = instance.table
    tau = assignment.slot_time
    n = len(instance.requests)
    shape = (n, horizon)
    x, o, p = (np.zeros(shape, dtype=bool) for _ in range(3))
    u, c, g = (np.zeros(shape, dtype=np.int64) for _ in range(3))
    comp = np.zeros(n, dtype=np.int64)
    gen = np.zeros(n, dtype=np.int64)
    finish_slot = np.full(n, -1)
    P, N = table.prompt_len, table.output_len
    problem = ""
    for k in range(horizon):
        runs = assignment.run[k] if k < assignment.horizon else []
        pre = assignment.preempt[k] if k < assignment.horizon else []
        for i in pre:
            if (comp[i] == 0 or i in runs) and not problem:
                problem = f"slot {k}: preempts request {i}, which holds no KV or also runs"
            comp[i] = 0
            p[i, k] = True
        budget, seqs = spec.token_budget, spec.max_seqs
        for i in runs:
            released = k * tau >= table.arrival[i] and all(0 <= finish_slot[q] < k for q in table.parents[i])
            if (not released or gen[i] >= N[i]) and not problem:
                problem = f"slot {k}: runs request {i}, which is not released or already finished"
            if budget == 0 or seqs == 0:
                break
            chunk = min(int(P[i] + gen[i] - comp[i]), budget)
            comp[i] += chunk
            budget -= chunk
            seqs -= 1
            x[i, k] = True
            u[i, k] = chunk
            if comp[i] == P[i] + gen[i]:
                gen[i] += 1
                o[i, k] = True
                if gen[i] == N[i]:
                    finish_slot[i] = k
        held = sum(spec.blocks_for(int(t)) for t in comp)
        if held > spec.kv_blocks and not problem:
            problem = f"slot {k}: needs {held} KV blocks > {spec.kv_blocks}"
        c[:, k] = comp
        g[:, k] = gen
        comp[finish_slot == k] = 0  # freed once the last token is delivered
    return Played(x, o, p, u, c, g, not problem, problem)


def model_values(hm: HindsightModel, played: Played) -> list[int]:
    """Every model variable's value for a played assignment (a complete hint / model check).

    For the compact model the played run is first reduced as its dominance rules allow: only
    SLO-met requests keep their runs, and paused requests hold no KV.
    """
    values = list(hm.model.lb)
    inst = hm.instance
    keep = _compact_met_requests(hm, played) if hm.kind == "compact" else None
    for i, v in enumerate(hm.req):
        r = inst.requests[i]
        if keep is not None and i not in keep:
            continue  # dropped: all its variables stay at 0
        lag = 0
        for t, k in enumerate(v.slots()):
            values[v.x[t]] = int(played.o[i, k] if hm.kind == "compact" else played.x[i, k])
            values[v.g[t]] = int(played.g[i, k])
            done = played.g[i, k] >= r.output_len
            values[v.fin[t]] = int(done)
            if hm.kind == "compact":
                values[v.b[t]] = inst.engine.blocks_for(r.prompt_len + int(played.g[i, k]) - 1) if played.o[i, k] else 0
            else:
                for arr, var in ((played.o, v.o), (played.p, v.p), (played.u, v.u)):
                    values[var[t]] = int(arr[i, k])
                c = int(played.c[i, k])
                values[v.c[t]] = c
                values[v.b[t]] = inst.engine.blocks_for(c)
            if v.lag:
                if played.o[i, k]:
                    before = int(played.g[i, k - 1]) if k > v.start else 0
                    lag = max(lag, _lateness_ticks(hm, r, k, before))
                values[v.lag[t]] = lag
                values[v.late[t]] = lag if played.o[i, k] else 0
    tau_t = round(hm.tau * hm.scale)
    for v in hm.req:
        for var, t, j_k in v.deficit:
            values[var] = min(j_k, max(0, j_k - tau_t * values[v.g[t]]))
    for key, var in hm.met.items():
        values[var] = 0
        values[var] = int(_met(hm, values, key))
    return values


def _lateness_ticks(hm: HindsightModel, r, k: int, before: int) -> int:
    """(k+1) tau - ideal_1 - before / r in the model's integer ticks."""
    ideal1_t = round((r.arrival + r.ttft_target) * hm.scale)
    return (k + 1) * round(hm.tau * hm.scale) - ideal1_t - before * round(hm.scale / r.read_rate)


def _compact_met_requests(hm: HindsightModel, played: Played) -> set[int]:
    """Requests whose SLO the played run meets within their compact-model window (bulk: the
    whole group), in the model's own arithmetic."""
    inst = hm.instance
    ok_key: dict[str, bool] = {}
    key_of = []
    for i, (r, v) in enumerate(zip(inst.requests, hm.req, strict=True)):
        key = f"g:{r.group}" if r.group is not None else f"r:{r.id}"
        key_of.append(key)
        good = bool(v.x) and played.g[i, v.start + len(v.x) - 1] >= r.output_len and played.g[i, :v.start].sum() == 0
        if good and v.lag:
            lag, area = 0, 0
            budget_t = int((1 - hm.qoe_threshold) * r.output_len * (r.output_len + 1) / (2 * r.read_rate) * hm.scale + 1e-6)
            for k in v.slots():
                if played.o[i, k]:
                    lag = max(lag, _lateness_ticks(hm, r, k, int(played.g[i, k - 1]) if k > v.start else 0))
                    area += lag
            good = area <= budget_t
        ok_key[key] = ok_key.get(key, True) and good
    return {i for i, key in enumerate(key_of) if ok_key[key]}


def _met(hm: HindsightModel, values: list[int], key: str) -> bool:
    """Whether the met variable `key` may be 1 under `values` (its constraints all hold)."""
    values = list(values)
    values[hm.met[key]] = 1
    var = hm.met[key]
    met_vars = set(hm.met.values())
    for c in hm.model.constraints:
        if c.sense == ">=" and set(c.terms) <= met_vars and all(a > 0 for a in c.terms.values()):
            continue  # an attainment floor: raising a met flag only helps it
        if var in c.terms or var in c.enforce:
            if c.enforce and not all(values[e] for e in c.enforce):
                continue
            act = sum(coef * values[v] for v, coef in c.terms.items())
            if not {"<=": act <= c.rhs, ">=": act >= c.rhs, "==": act == c.rhs}[c.sense]:
                return False
    return hm.model.lb[var] <= 1 <= hm.model.ub[var]


def to_schedule(instance: Instance, played: Played, tau: float, meta: dict | None = None) -> Schedule:
    """Timelines of a played assignment: token k of slot s is delivered at (s + 1) * tau."""
    table = instance.table
    timelines = []
    n, horizon = played.x.shape
    finish = {}
    for i, r in enumerate(instance.requests):
        slots = np.flatnonzero(played.o[i])
        times = (slots + 1) * tau
        finish[i] = float(times[-1]) if len(slots) >= r.output_len else None
    for i, r in enumerate(instance.requests):
        parents = table.parents[i]
        release = r.arrival
        if len(parents) and all(finish[q] is not None for q in parents):
            release = max(finish[q] for q in parents)
        admissions, preemptions = [], []
        holding = False
        for k in range(horizon):
            if played.p[i, k]:
                preemptions.append(k * tau)
                holding = False
            if played.x[i, k] and not holding:
                admissions.append(k * tau)
                holding = True
            if played.g[i, k] >= r.output_len:
                holding = False
        slots = np.flatnonzero(played.o[i])
        timelines.append(RequestTimeline(r.id, release, (slots + 1) * tau, admissions, preemptions, finish[i]))
    return Schedule(timelines, iterations=int(played.x.any(axis=0).sum()), meta=dict(meta or {}))


def assignment_from_schedule(instance: Instance, schedule: Schedule) -> Assignment:
    """The assignment a simulator run followed (needs `record_iterations=True` in slotted mode):
    each iteration's scheduled requests in order, and the preemptions at its start."""
    log = schedule.meta.get("iteration_log")
    tau = instance.engine.slot_time
    if log is None or tau is None:
        raise ValueError("a hint schedule needs meta['iteration_log'] from a slotted run with record_iterations=True")
    starts = np.asarray(log["start"])
    horizon = int(round(starts.max() / tau)) + 1 if len(starts) else 0
    run: list[list[int]] = [[] for _ in range(horizon)]
    preempt: list[list[int]] = [[] for _ in range(horizon)]
    for start, scheduled in zip(starts, log["scheduled"], strict=True):
        run[int(round(start / tau))] = [int(i) for i in scheduled]
    for i, tl in enumerate(schedule.timelines):
        for t in tl.preemptions:
            k = int(round(t / tau))
            if k < horizon:
                preempt[k].append(i)
    return Assignment(tau, run, preempt)
