"""Token windows and forced engine work: what every schedule of the engine must respect.

For each request and output token j = 1..n this module derives, from the instance alone:

- `earliest[j]`: no schedule delivers token j before it. Token 1 needs the whole prompt
  prefilled after the request's release (a DAG child's release is at least its parents' earliest
  finish), in at least ceil(P / token_budget) iterations; every later token needs one more
  iteration, which starts after the previous token's iteration ended.
- `latest[j]`: a schedule that meets the request's SLO delivers token j by then. Throughput: the
  last token by the deadline; bulk: by the group deadline minus the fastest run of the member's
  DAG descendants; latency: QoE >= q means S_delay <= B = (1-q) n(n+1)/(2r), and every token k >= j
  is read at least d_j - ideal_j late (the read-time lag is a running maximum), so
  d_j <= ideal_j + B / (n - j + 1). Each token also comes at least one iteration before the next,
  so latest[j] <= latest[j+1] - (the shortest iteration that can deliver token j+1).
- `demand[j, res]`: engine seconds the delivery of token j forces, per resource row. An
  iteration lasts at least c0 + the latency model's terms of the work in it (every coefficient
  is >= 0, so an iteration's time is at least the sum of its members' own terms plus c0) and
  holds at most token_budget tokens, max_seqs requests and kv_blocks blocks. Token j's work:
  token 1 the prompt's prefill (P tokens, P(P+1)/2 attention pairs however it is chunked,
  ceil(P/bs) blocks in its last chunk); token j >= 2 one decode step at context P+j-1, or, after
  a recompute preemption, a prefill of P+j-1 tokens, whichever costs less (the one iteration
  that delivers it holds the KV of P+j-1 tokens either way). With res in (tokens, seqs, blocks)
  the iteration count in a set of iterations is >= (sum of res) / capacity_res, so their total
  time is >= sum of own terms + c0 * (sum of res) / capacity_res: demand[j, res] = own_j +
  c0 * use_j,res / capacity_res. In slotted mode every iteration lasts exactly tau and the
  latency model is unused: own_j = 0 and c0 is replaced by tau.

Preemption (recompute or swap) and the admission gate only add work or remove choices, so every
quantity above stays a valid bound under them. Prefix caching (skipped prefill of cached
blocks) is not modelled by the simulator this module targets; an engine with it would need the
prompt's uncached part in token 1's work.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from formulations.exact.slots import DEADLINE_TOL, first_slot, last_slot_by
from formulations.instance import Instance
from formulations.metrics import DEFAULT_QOE_THRESHOLD
from formulations.qoe import qoe, whole_area
from formulations.requests import RequestClass
from formulations.arithmetic import ceil_div

RESOURCES = ("tokens", "seqs", "blocks")  # per-iteration capacities: token_budget, max_seqs, kv_blocks


@dataclass(frozen=True)
class TokenWindows:
    """One request's token windows and forced work (index j-1 for token j)."""

    release: float  # no iteration that serves it starts earlier (slotted: a slot boundary)
    earliest: np.ndarray  # (n,) seconds
    latest: np.ndarray  # (n,) seconds; strictly increasing
    demand: np.ndarray  # (n, 3) seconds, columns as RESOURCES
    feasible: bool  # meets its SLO when every token comes at its earliest time


@dataclass(frozen=True)
class _Work:
    """Per-token forced work of a request: own latency-model seconds, iterations, resource use."""

    own: np.ndarray  # (n,) seconds of latency-model terms (0 when slotted)
    iterations: np.ndarray  # (n,) iterations at least (token 1: the prompt's chunks)
    use: np.ndarray  # (n, 3) tokens, sequence-steps and KV blocks


def iteration_cost(instance: Instance) -> float:
    """The part of every iteration's time no request pays for: c0, or tau when slotted."""
    spec = instance.engine
    return spec.slot_time if spec.slot_time is not None else spec.latency.c0


def _work(instance: Instance, prompt: int, n: int) -> _Work:
    spec = instance.engine
    lat = spec.latency
    ctx = prompt + np.arange(n, dtype=np.float64)  # tokens in cache after delivering token j (j = 1..n)
    iterations = np.ones(n)
    iterations[0] = ceil_div(prompt, spec.token_budget)
    if spec.slot_time is not None:
        own = np.zeros(n)
    else:
        recompute = lat.c_prefill * ctx + lat.c_prefill_ctx * ctx * (ctx + 1) / 2
        own = np.minimum(lat.c_decode + lat.c_ctx * ctx, recompute)
        own[0] = recompute[0]
    use = np.empty((n, 3))
    use[:, 0] = 1.0
    use[0, 0] = prompt
    use[:, 1] = iterations
    use[:, 2] = ceil_div(ctx, spec.block_size)
    return _Work(own, iterations, use)


def token_windows(instance: Instance, qoe_threshold: float = DEFAULT_QOE_THRESHOLD) -> list[TokenWindows]:
    """Windows of every request, in instance order (DAG heads and tails included)."""
    spec = instance.engine
    table = instance.table
    reqs = instance.requests
    c = iteration_cost(instance)
    caps = np.array([spec.token_budget, spec.max_seqs, spec.kv_blocks], dtype=np.float64)
    works = [_work(instance, r.prompt_len, r.output_len) for r in reqs]
    step = [c * w.iterations + w.own for w in works]  # shortest time in which each token can come
    release = [float(r.arrival) for r in reqs]
    earliest: list[np.ndarray] = [np.empty(0)] * len(reqs)
    for i in _topological(instance):
        for p in table.parents[i].tolist():
            release[i] = max(release[i], float(earliest[p][-1]))
        if spec.slot_time is not None:
            release[i] = first_slot(release[i], spec.slot_time) * spec.slot_time
        earliest[i] = release[i] + np.cumsum(step[i])
    cap_latest = [_slo_latest(instance, r, qoe_threshold) for r in reqs]
    children: list[list[int]] = [[] for _ in reqs]
    for child, parents in enumerate(table.parents):
        for p in parents.tolist():
            children[p].append(child)
    latest: list[np.ndarray] = [np.empty(0)] * len(reqs)
    for i in reversed(_topological(instance)):
        last = cap_latest[i]
        for k in children[i]:
            last[-1] = min(last[-1], latest[k][0] - step[k][0])
        latest[i] = _backward(last, step[i], spec.slot_time)
    out = []
    for i, r in enumerate(reqs):
        demand = works[i].own[:, None] + c * works[i].use / caps[None, :]
        feasible = bool(np.all(earliest[i] <= latest[i] + DEADLINE_TOL))
        if feasible and r.cls is RequestClass.LATENCY:
            feasible = qoe(earliest[i], r.output_len, r.arrival, r.ttft_target, r.read_rate) >= qoe_threshold
        out.append(TokenWindows(release[i], earliest[i], latest[i], demand, feasible))
    return out


def _topological(instance: Instance) -> list[int]:
    """Request indices with every DAG parent before its children."""
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(instance.requests)))
    for child, parents in enumerate(instance.table.parents):
        graph.add_edges_from((int(p), child) for p in parents)
    return list(nx.lexicographical_topological_sort(graph))


def _slo_latest(instance: Instance, r, qoe_threshold: float) -> np.ndarray:
    """Latest delivery of each token that the SLO alone allows (before the one-iteration spacing)."""
    n = r.output_len
    if r.cls is RequestClass.LATENCY:
        j = np.arange(1, n + 1, dtype=np.float64)
        ideal = r.arrival + r.ttft_target + (j - 1) / r.read_rate
        budget = (1 - qoe_threshold) * whole_area(n, r.read_rate)
        return ideal + budget / (n - j + 1) + DEADLINE_TOL
    latest = np.full(n, np.inf)
    latest[-1] = instance.deadline(r) + DEADLINE_TOL
    return latest


def _backward(latest: np.ndarray, step: np.ndarray, slot_time: float | None) -> np.ndarray:
    """latest[j] <= latest[j+1] - step[j+1] for all j, by a reverse running minimum; slotted
    times are rounded down to the slot end that delivers a token."""
    if slot_time is not None:
        latest = np.array([(last_slot_by(t, slot_time) + 1) * slot_time if np.isfinite(t) else t for t in latest])
    cum = np.cumsum(step)
    shifted = latest - cum
    return np.minimum.accumulate(shifted[::-1])[::-1] + cum
