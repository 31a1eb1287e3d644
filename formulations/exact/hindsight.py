"""The offline hindsight problem in slotted mode, as one exact integer linear model.

Given an `Instance` with true output lengths and `engine.slot_time = tau`, choose for every
request and iteration (slot) what it does, to maximize SLO attainment (docs/DESIGN.md objective).

Engine semantics covered exactly (formulations/online.py rules + the slotted mode of APIS.md):
- slot k occupies [k tau, (k+1) tau); request i may run in slot k iff k tau >= arrival; a DAG
  child may run only in slots after the one that delivered its last parent's final token;
- per slot: tokens <= token_budget, running requests <= max_seqs;
- chunked prefill with the engine's greedy chunk rule: a running request either finishes its
  (re)prefill, or decodes one token, except at most one request per slot whose chunk is partial,
  and then it took the whole remaining budget (the slot's tokens == token_budget);
  the slot that completes a prefill delivers one token, each decode slot delivers one token;
- KV: after slot k request i holds ceil(C_ik / block_size) blocks, C_ik = tokens computed
  (prefill done, or prompt + generated-before-the-step for a decode); the sum over requests
  <= kv_blocks in every slot; a request frees its blocks when its last token is delivered;
- preemption (recompute only): a preempted request drops its KV (C = 0) and must prefill its
  prompt plus its generated tokens again before its next token; a plan may not preempt and run
  the same request in one slot, nor preempt one that holds no KV (the engine's PlanError rules).
  Swap mode is not modelled: solvers reject it.
- requests not finished within the horizon count as missing their SLO (as in the scorer).

Free of vLLM's admission gate, on purpose: `engine.reserve_full_prompt` and `engine.watermark`
(and the engine's "no admission in a step that preempted") are rules of vLLM's scheduler about
*when* it admits, not capacities: a schedule that admits a request whose first chunk fits, and
keeps every slot's blocks within `kv_blocks`, is executed by the same engine mechanisms (vLLM
runs it with --no-scheduler-reserve-full-isl; so does the simulator with
reserve_full_prompt=False). Every schedule the gated engine can produce is such a schedule, so
the model's optimum is an upper bound on attainment under the gate as well (possibly looser than
a gated optimum); online policies run gated are compared against it as a bound. Replaying an
optimal assignment needs the gate off (ReplayPolicy refuses a gated engine instead of deviating
silently): `instance.engine.with_(reserve_full_prompt=False, watermark=0.0)`.

No prefix cache: instances whose requests carry content ids with prefix caching on are refused
(build.py); a hit shortens prefills, so a model without hits would bound nothing.

Objective: latency requests meet QoE >= q, written exactly through the lag recursion of
formulations/qoe.py: when token j is delivered in slot k, lat_j = max(lat_{j-1},
(k+1) tau - ideal_1 - (j-1)/r, 0), and QoE >= q iff sum_j lat_j <= (1-q) n(n+1)/(2r). Times are
integers in ticks of 1/scale seconds (`formulations.exact.slots.time_scale`): exact when tau,
1/r and arrival+TTFT are multiples of 1 microsecond (else rounded to it). Throughput: last
token by its deadline; bulk: every member by the group deadline, weight = group size.
The model's objective is attainment; the secondary objective (ties only) is solved
lexicographically by `solvers.exact.solve`: with attainment fixed at its optimum, minimize the
number of (request, slot) pairs within the horizon in which a request is unfinished (total
completion time; `HindsightModel.secondary_terms`).

The horizon is the last slot in which any request can still meet its SLO (later activity cannot
change attainment), so the attainment optimum is exact for the engine.

Formulation choices that keep it small: variables exist only in each request's window [release
lower bound, horizon) (DAG children start after their parents' fastest possible run); the
cumulative token count G_ik is a variable so each constraint touches a few variables; identical
requests are ordered by completion (symmetry breaking); a preemption is only allowed while
holding KV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import networkx as nx

from formulations.exact.linear import LinearModel
from formulations.exact.slots import first_slot, last_slot_by, min_slots, slot_time, instance_time_scale
from formulations.instance import Instance
from formulations.metrics import DEFAULT_QOE_THRESHOLD
from formulations.requests import RequestClass, ValidationError


@dataclass
class RequestVars:
    """Variable indices of one request, per slot of its window (position t = slot start + t)."""

    start: int  # first slot of the window
    x: list[int] = field(default_factory=list)  # runs (gets tokens) in the slot
    o: list[int] = field(default_factory=list)  # delivers a token in the slot
    p: list[int] = field(default_factory=list)  # preempted at the start of the slot
    g: list[int] = field(default_factory=list)  # tokens delivered by the end of the slot
    c: list[int] = field(default_factory=list)  # tokens computed (KV) after the slot
    u: list[int] = field(default_factory=list)  # tokens processed in the slot
    b: list[int] = field(default_factory=list)  # KV blocks held in the slot
    fin: list[int] = field(default_factory=list)  # finished by the end of the slot
    lag: list[int] = field(default_factory=list)  # latency: lateness of its last delivered token
    late: list[int] = field(default_factory=list)  # latency: lateness of the token delivered in the slot
    deficit: list[tuple[int, int, int]] = field(default_factory=list)  # latency cut: (var, position, J_k)

    def slots(self) -> range:
        return range(self.start, self.start + len(self.x))


@dataclass
class HindsightModel:
    model: LinearModel
    instance: Instance
    horizon: int  # slots 0 .. horizon-1
    tau: float
    scale: int  # time ticks per second in the lateness constraints
    req: list[RequestVars]
    met: dict[str, int]  # "r:<request id>" or "g:<group id>" -> met binary
    weight: dict[str, int]  # attainment weight of each met variable
    qoe_threshold: float
    kind: str = "general"  # "general" (this module) or "compact" (formulations/exact/compact.py)

    def attainment(self, values: list[int]) -> int:
        return sum(self.weight[k] * values[v] for k, v in self.met.items())

    def attainment_terms(self) -> dict[int, int]:
        return {v: self.weight[k] for k, v in self.met.items()}

    def secondary_terms(self) -> dict[int, int]:
        """Finished-flags of every request and slot: maximizing their sum minimizes the total
        number of (request, slot) pairs in which a request is unfinished (total completion time)."""
        return {f: 1 for v in self.req for f in v.fin}

    def unfinished_slots(self, values: list[int]) -> int:
        return sum(len(v.fin) - sum(values[f] for f in v.fin) for v in self.req)


def release_slots(instance: Instance, tau: float) -> list[int]:
    """Earliest slot each request can run: its arrival slot, and for DAG children the slot after
    their parents' fastest finish (a valid lower bound, so the window loses no schedule)."""
    spec = instance.engine
    table = instance.table
    earliest = [first_slot(r.arrival, tau) for r in instance.requests]
    for g in instance.groups:
        for member in nx.topological_sort(g.dag):
            i = instance.index[member]
            for p in table.parents[i]:
                rp = instance.requests[p]
                earliest[i] = max(earliest[i], earliest[p] + min_slots(rp.prompt_len, rp.output_len, spec.token_budget))
    return earliest


def last_relevant_slot(instance: Instance, r, tau: float, qoe_threshold: float) -> int:
    """The last slot in which delivering `r`'s final token can still meet its SLO: its deadline
    slot, or for a latency request the slot where the last token alone would use up the delay
    budget (1-q) S_whole."""
    if r.cls is RequestClass.LATENCY:
        budget = (1 - qoe_threshold) * r.output_len * (r.output_len + 1) / (2 * r.read_rate)
        ideal_n = r.arrival + r.ttft_target + (r.output_len - 1) / r.read_rate
        return last_slot_by(ideal_n + budget, tau)
    return last_slot_by(instance.deadline(r), tau)


def relevant_horizon(instance: Instance, tau: float, qoe_threshold: float) -> int:
    """Slots after which no request can still meet its SLO (1 + the last slot that matters)."""
    return 1 + max((last_relevant_slot(instance, r, tau, qoe_threshold) for r in instance.requests), default=0)


def build_hindsight(instance: Instance, qoe_threshold: float = DEFAULT_QOE_THRESHOLD,
                    horizon: int | None = None) -> HindsightModel:
    """The exact model of `instance` (see the module docstring); `horizon` overrides the relevant
    horizon (a shorter one restricts the schedules, a longer one only adds tie-breaking room)."""
    tau = slot_time(instance)
    spec = instance.engine
    if spec.preemption != "recompute":
        raise ValidationError(f"engine: preemption={spec.preemption!r}; the exact model covers recompute only")
    reqs = instance.requests
    table = instance.table
    horizon = relevant_horizon(instance, tau, qoe_threshold) if horizon is None else horizon
    if horizon < 1:
        raise ValidationError(f"horizon={horizon} must be >= 1")
    release = release_slots(instance, tau)
    scale = instance_time_scale(instance, tau)
    tau_t = round(tau * scale)
    m = LinearModel()
    rv: list[RequestVars] = []
    bs = spec.block_size

    for i, r in enumerate(reqs):
        n, P = r.output_len, r.prompt_len
        cmax = P + n - 1
        umax = min(spec.token_budget, cmax)
        start = min(release[i], horizon)
        v = RequestVars(start=start)
        for k in range(start, horizon):
            tag = f"{i}_{k}"
            v.x.append(m.binary(f"x{tag}"))
            v.o.append(m.binary(f"o{tag}"))
            v.p.append(m.binary(f"p{tag}"))
            v.g.append(m.var(f"g{tag}", 0, n))
            v.c.append(m.var(f"c{tag}", 0, cmax))
            v.u.append(m.var(f"u{tag}", 0, umax))
            v.b.append(m.var(f"b{tag}", 0, spec.blocks_for(cmax)))
            v.fin.append(m.binary(f"f{tag}"))
        rv.append(v)
        for t in range(len(v.x)):
            x, o, p, g, c, u, b, fin = v.x[t], v.o[t], v.p[t], v.g[t], v.c[t], v.u[t], v.b[t], v.fin[t]
            first = t == 0
            g_prev = None if first else v.g[t - 1]
            c_prev = None if first else v.c[t - 1]
            f_prev = None if first else v.fin[t - 1]
            # tokens delivered: G_k = G_{k-1} + o_k ; o <= x
            m.add({g: 1, o: -1, **({} if first else {g_prev: -1})}, "==", 0)
            m.add({o: 1, x: -1}, "<=", 0)
            # finished: fin <=> G == n
            m.add({g: 1, fin: -n}, ">=", 0)
            m.add({g: 1, fin: -1}, "<=", n - 1)
            if first:
                m.fix(p, 0)  # nothing to preempt before it ever ran
                m.add({c: 1, u: -1}, "==", 0)
                m.add({c: 1}, "<=", P)  # cap: C <= P + G_{k-1}
                m.add({c: 1}, ">=", P, enforce=(o,))  # a delivery completes the prefill
                m.add({c: 1, x: 1, o: -1}, "<=", P)
            else:
                m.add({x: 1, f_prev: 1}, "<=", 1)  # finished requests do not run
                m.add({p: 1, f_prev: 1}, "<=", 1)
                m.add({p: 1, c_prev: -1}, "<=", 0)  # preempt only while holding KV
                m.add({p: 1, x: 1}, "<=", 1)  # never preempt and run in one plan
                m.add({c: 1, f_prev: cmax}, "<=", cmax)  # blocks freed after the last token
                m.add({c: 1}, "<=", 0, enforce=(p,))  # recompute: the KV is gone
                # otherwise C_k = C_{k-1} + u_k (while not finished)
                m.add({c: 1, c_prev: -1, u: -1, p: -cmax, f_prev: -cmax}, "<=", 0)
                m.add({c: 1, c_prev: -1, u: -1, p: cmax, f_prev: cmax}, ">=", 0)
                m.add({c: 1, g_prev: -1}, "<=", P)
                m.add({c: 1, g_prev: -1}, ">=", P, enforce=(o,))
                m.add({c: 1, g_prev: -1, x: 1, o: -1}, "<=", P)
            m.add({u: 1, x: -umax}, "<=", 0)  # runs iff it processes tokens
            m.add({u: 1, x: -1}, ">=", 0)
            m.add({b: bs, c: -1}, ">=", 0)  # blocks >= ceil(C / block_size)

    # Tokens computed in a slot all sit in the KV cache, so a slot never processes more than
    # kv_blocks * block_size tokens: below the token budget no chunk is ever cut, every run
    # delivers a token (x == o) and the budget constraint is redundant.
    budget_binds = spec.kv_blocks * bs >= spec.token_budget
    if not budget_binds:
        for v in rv:
            for x, o in zip(v.x, v.o, strict=True):
                m.add({x: 1, o: -1}, "==", 0)
    for v in rv:
        for f_prev, f in zip(v.fin, v.fin[1:]):
            m.add({f: 1, f_prev: -1}, ">=", 0)  # implied by G's monotonicity; explicit for the LP
    # per-slot capacities and the greedy chunk rule
    for k in range(horizon):
        alive = [(i, k - v.start) for i, v in enumerate(rv) if v.start <= k < v.start + len(v.x)]
        if not alive:
            continue
        m.add({rv[i].b[t]: 1 for i, t in alive}, "<=", spec.kv_blocks)
        if spec.max_seqs < len(alive):
            m.add({rv[i].x[t]: 1 for i, t in alive}, "<=", spec.max_seqs)
        if not budget_binds:
            continue
        tokens = {rv[i].u[t]: 1 for i, t in alive}
        m.add(tokens, "<=", spec.token_budget)
        partial: dict[int, int] = {}
        for i, t in alive:
            partial[rv[i].x[t]] = 1
            partial[rv[i].o[t]] = -1
        m.add(partial, "<=", 1)  # at most one partial prefill chunk per slot ...
        m.add({**tokens, **{var: -spec.token_budget * c for var, c in partial.items()}}, ">=", 0)  # ... and it fills the budget

    # DAG precedence: a child runs only in slots after its parents finished
    for i, v in enumerate(rv):
        for par in table.parents[i]:
            pv = rv[par]
            for t, k in enumerate(v.slots()):
                # release_slots puts the child's window after the parent's fastest finish
                m.add({v.x[t]: 1, pv.fin[k - 1 - pv.start]: -1}, "<=", 0)

    met: dict[str, int] = {}
    weight: dict[str, int] = {}

    def finished_by(i: int, k: int) -> int | None:
        v = rv[i]
        k = min(k, v.start + len(v.x) - 1)
        return v.fin[k - v.start] if k >= v.start else None

    for i, r in enumerate(reqs):
        key = f"r:{r.id}"
        if r.cls is RequestClass.THROUGHPUT:
            met[key] = mv = m.binary(f"met_{key}")
            weight[key] = 1
            f = finished_by(i, last_slot_by(instance.deadline(r), tau))
            m.add({mv: 1, f: -1}, "<=", 0) if f is not None else m.fix(mv, 0)
        elif r.cls is RequestClass.LATENCY:
            met[key] = mv = m.binary(f"met_{key}")
            weight[key] = 1
            _add_latency(m, rv[i], r, mv, tau_t, scale, qoe_threshold, horizon)
    for grp in instance.groups:
        key = f"g:{grp.id}"
        met[key] = mv = m.binary(f"met_{key}")
        weight[key] = len(grp.members)
        last = last_slot_by(instance.group_deadlines[grp.id], tau)
        for member in grp.members:
            f = finished_by(instance.index[member], last)
            if f is None:
                m.fix(mv, 0)
            else:
                m.add({mv: 1, f: -1}, "<=", 0)

    _break_symmetry(m, instance, rv)

    m.objective = {v: weight[k] for k, v in met.items()}
    return HindsightModel(m, instance, horizon, tau, scale, rv, met, weight, qoe_threshold)


def _add_latency(m: LinearModel, v: RequestVars, r, met: int, tau_t: int, scale: int, q: float, horizon: int) -> None:
    """QoE >= q through the lag recursion (module docstring), all in integer ticks."""
    n = r.output_len
    ideal1_t = round((r.arrival + r.ttft_target) * scale)
    rinv_t = round(scale / r.read_rate)
    budget_t = int((1 - q) * n * (n + 1) / (2 * r.read_rate) * scale + 1e-6)
    top = max(0, (horizon + 1) * tau_t - ideal1_t)
    if not v.x:
        m.fix(met, 0)
        return
    for t, k in enumerate(v.slots()):
        lag = m.var(f"lag{r.id}_{k}", 0, top)
        late = m.var(f"late{r.id}_{k}", 0, top)
        v.lag.append(lag)
        v.late.append(late)
        if t:
            m.add({lag: 1, v.lag[t - 1]: -1}, ">=", 0)
        # delivering token G_{k-1}+1 at (k+1) tau: lateness >= (k+1) tau - ideal_1 - G_{k-1}/r
        terms = {lag: 1}
        if t:
            terms[v.g[t - 1]] = rinv_t
        m.add(terms, ">=", (k + 1) * tau_t - ideal1_t, enforce=(v.o[t],))
        m.add({late: 1, lag: -1}, ">=", 0, enforce=(v.o[t],))
    m.add({late: 1 for late in v.late}, "<=", budget_t, enforce=(met,))
    m.add({met: 1, v.fin[-1]: -1}, "<=", 0)  # a request not completed scores QoE 0
    _add_deficit_cut(m, v, r, met, tau_t, scale, budget_t)


def _ideal_area(r, a: float, b: float) -> float:
    """Integral over [a, b) of I(t), the number of tokens ideally read by time t."""
    first = r.arrival + r.ttft_target
    return sum(max(0.0, b - max(a, first + j / r.read_rate)) for j in range(r.output_len))


def _add_deficit_cut(m: LinearModel, v: RequestVars, r, met: int, tau_t: int, scale: int, budget_t: int) -> None:
    """A valid inequality that gives the LP relaxation a real lower bound on the delay area.

    S_delay = integral of (I(t) - R(t)) dt with R(t) the tokens read by t; since R <= D (tokens
    delivered) and R <= I, S_delay >= integral of max(0, I - D). During slot k+1, D = G_k, so that
    slot contributes at least J_k - tau G_k with J_k = integral of I over [(k+1) tau, (k+2) tau);
    before the first possible delivery D = 0. Rounded down to ticks, so it never cuts a schedule.
    """
    tau = tau_t / scale
    before = math.floor(_ideal_area(r, 0.0, (v.start + 1) * tau) * scale + 1e-9)
    terms: dict[int, int] = {}
    for t, k in enumerate(v.slots()):
        j_k = math.floor(_ideal_area(r, (k + 1) * tau, (k + 2) * tau) * scale + 1e-9)
        if j_k <= 0:
            continue
        deficit = m.var(f"deficit{r.id}_{k}", 0, j_k)
        m.add({deficit: 1, v.g[t]: tau_t}, ">=", j_k)
        v.deficit.append((deficit, t, j_k))
        terms[deficit] = 1
    if before > budget_t:
        m.fix(met, 0)
    elif terms:
        m.add(terms, "<=", budget_t - before, enforce=(met,))


def interchangeable_requests(instance: Instance) -> list[list[int]]:
    """Classes (of two or more, in index order) of requests that no rule tells apart: same class,
    arrival, lengths and SLO, no group. Swapping two of them maps any schedule to one with the
    same attainment, so models may order them (symmetry breaking) and a set of requests that
    cannot all be served stays so when one is swapped for its twin."""
    classes: dict[tuple, list[int]] = {}
    for i, r in enumerate(instance.requests):
        if r.group is None:
            key = (r.cls, r.arrival, r.prompt_len, r.output_len, r.ttft_target, r.read_rate, r.slack_ratio)
            classes.setdefault(key, []).append(i)
    return [members for members in classes.values() if len(members) > 1]


def _break_symmetry(m: LinearModel, instance: Instance, rv: list[RequestVars]) -> None:
    """Interchangeable requests finish in index order: relabelling any schedule achieves that,
    so no objective value is lost."""
    for members in interchangeable_requests(instance):
        for a, b in zip(members, members[1:]):
            va, vb = rv[a], rv[b]
            assert va.start == vb.start and len(va.x) == len(vb.x)
            for fa, fb in zip(va.fin, vb.fin, strict=True):
                m.add({fa: 1, fb: -1}, ">=", 0)
