"""The compact exact model, valid when the token budget can never bind (kv_blocks * block_size
< token_budget), which is the usual case when KV is the tight resource.

Why the budget cannot bind: every token processed in a slot is in the KV cache after it, so a
slot processes at most kv_blocks * block_size tokens. Then no prefill chunk is ever cut, every
slot a request runs in delivers exactly one token, and three dominance facts hold for the
engine (formulations/online.py, slotted recompute mode), each turning any engine schedule into
one that the compact model represents with the same token times of the SLO-met requests:

1. Idle residents can be preempted. A request that pauses holds blocks_for(P + G - 1) blocks;
   preempting it frees them, and when it runs again its recompute prefill (P + G tokens, within
   the budget) delivers its next token in that same slot, holding blocks_for(P + G) - exactly
   what a decode step would hold. So the KV a request holds in slot k is
   x_k * blocks_for(P + G_k - 1) (x_k: it runs; G_k: tokens delivered by the end of slot k).
2. Requests that miss their SLO can be dropped (never run): removing a request only lowers the
   KV, sequence and token use of every slot, and with no cut chunks nobody else's chunks change.
   So x_ik <= met_i (bulk members: <= met of their group).
3. An SLO-met request has finished by its last relevant slot (deadline, or the last slot a
   latency stream can end and still reach QoE >= q): its window is [release, last relevant],
   and G at the window's end is n * met.

The replay decodes x into plans and preempts paused residents only when the KV would overflow
(assignment.decode), so the replayed engine run has exactly the model's token times.
"""

from __future__ import annotations

from formulations.exact.hindsight import (
    HindsightModel,
    RequestVars,
    _add_latency,
    _break_symmetry,
    last_relevant_slot,
    release_slots,
)
from formulations.exact.linear import LinearModel
from formulations.exact.slots import min_slots, slot_time, time_scale
from formulations.instance import Instance
from formulations.requests import RequestClass


def budget_never_binds(instance: Instance) -> bool:
    spec = instance.engine
    return spec.kv_blocks * spec.block_size < spec.token_budget


def build_compact(instance: Instance, qoe_threshold: float) -> HindsightModel:
    tau = slot_time(instance)
    spec = instance.engine
    reqs = instance.requests
    table = instance.table
    release = release_slots(instance, tau)
    lat_values = [tau] + [v for r in reqs if r.cls is RequestClass.LATENCY
                          for v in (1.0 / r.read_rate, r.arrival + r.ttft_target)]
    scale = time_scale(lat_values)
    tau_t = round(tau * scale)
    m = LinearModel()
    bs = spec.block_size

    met: dict[str, int] = {}
    weight: dict[str, int] = {}
    key_of: list[str] = []
    for r in reqs:
        key = f"g:{r.group}" if r.cls is RequestClass.BULK else f"r:{r.id}"
        if key not in met:
            met[key] = m.binary(f"met_{key}")
            weight[key] = len(instance.group_by_id[r.group].members) if r.cls is RequestClass.BULK else 1
        key_of.append(key)

    last = []
    for r in reqs:
        if r.cls is RequestClass.BULK:
            grp = instance.group_by_id[r.group]
            last.append(max(last_relevant_slot(instance, instance.by_id[mm], tau, qoe_threshold) for mm in grp.members))
        else:
            last.append(last_relevant_slot(instance, r, tau, qoe_threshold))
    horizon = max(1, 1 + max(last, default=0))

    rv: list[RequestVars] = []
    for i, r in enumerate(reqs):
        n, P = r.output_len, r.prompt_len
        start = release[i]
        end = last[i]  # inclusive
        v = RequestVars(start=start)
        mv = met[key_of[i]]
        if end - start + 1 < min_slots(P, n, spec.token_budget):
            m.fix(mv, 0)  # cannot finish in time even alone
            rv.append(v)
            continue
        base = spec.blocks_for(P)
        for k in range(start, end + 1):
            tag = f"{i}_{k}"
            x = m.binary(f"x{tag}")
            v.x.append(x)
            v.o.append(x)
            v.g.append(m.var(f"g{tag}", 0, n))
            v.b.append(m.var(f"b{tag}", 0, spec.blocks_for(P + n - 1)))
            v.fin.append(m.binary(f"f{tag}"))
        for t in range(len(v.x)):
            x, g, b, fin = v.x[t], v.g[t], v.b[t], v.fin[t]
            if t == 0:
                m.add({g: 1, x: -1}, "==", 0)
            else:
                m.add({g: 1, v.g[t - 1]: -1, x: -1}, "==", 0)
                m.add({x: 1, v.fin[t - 1]: 1}, "<=", 1)
                m.add({fin: 1, v.fin[t - 1]: -1}, ">=", 0)
            m.add({g: 1, fin: -n}, ">=", 0)
            m.add({g: 1, fin: -1}, "<=", n - 1)
            m.add({x: 1, mv: -1}, "<=", 0)  # dominance 2
            m.add({b: 1, x: -base}, ">=", 0)  # LP-tight part of the block count
            m.add({b: bs, g: -1}, ">=", P - 1, enforce=(x,))  # b >= ceil((P + G_k - 1) / bs) when running
        m.add({v.g[-1]: 1, mv: -n}, "==", 0)  # dominance 3: met <=> finished within the window
        # KV area: a met request holds blocks_for(P + t - 1) in its t-th run slot, t = 1..n. Implied
        # for integer points, but it gives the LP relaxation the real KV-time a request needs.
        area = sum(spec.blocks_for(P + t - 1) for t in range(1, n + 1))
        m.add({**{b: 1 for b in v.b}, mv: -area}, ">=", 0)
        rv.append(v)

    for k in range(horizon):
        alive = [(i, k - v.start) for i, v in enumerate(rv) if v.x and v.start <= k < v.start + len(v.x)]
        if not alive:
            continue
        m.add({rv[i].b[t]: 1 for i, t in alive}, "<=", spec.kv_blocks)
        if spec.max_seqs < len(alive):
            m.add({rv[i].x[t]: 1 for i, t in alive}, "<=", spec.max_seqs)

    for i, v in enumerate(rv):
        for par in table.parents[i]:
            pv = rv[par]
            for t, k in enumerate(v.slots()):
                if not pv.fin:
                    m.fix(v.x[t], 0)
                    continue
                # release_slots puts k - 1 at or after the parent's window start
                pk = min(k - 1, pv.start + len(pv.fin) - 1)
                m.add({v.x[t]: 1, pv.fin[pk - pv.start]: -1}, "<=", 0)

    for i, r in enumerate(reqs):
        if r.cls is RequestClass.LATENCY and rv[i].x:
            _add_latency(m, rv[i], r, met[key_of[i]], tau_t, scale, qoe_threshold, horizon)

    _break_symmetry(m, instance, rv)
    m.objective = {v: weight[k] for k, v in met.items()}
    return HindsightModel(m, instance, horizon, tau, scale, rv, met, weight, qoe_threshold, kind="compact")
