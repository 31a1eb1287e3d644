"""The per-slot KV relaxation (slotted mode): block-slots inside token windows.

The interval relaxation (intervals.py) sums each request's forced work over whole intervals, so
two requests whose token windows overlap by a slot or two can both pass every interval row
while no slot holds both of them. This relaxation keeps the slots. For each request and output
token j it uses:

- the slot k_j that delivers token j lies in [first_j, last_j], the slots of
  windows.py's earliest and latest delivery times; k_1 < k_2 < ... (one token per slot), and a
  DAG child's k_1 comes at least ceil(P / token_budget) slots after its parents' last k;
- in slot k_j the request holds the KV of P + j - 1 tokens (the engine's model: the slot that
  delivers token j has its prompt and its j - 1 earlier outputs in cache, whether it decoded or
  recomputed after a preemption), i.e. blocks_for(P + j - 1) blocks, is one of <= max_seqs
  running requests and processes at least one of the token_budget tokens;
- a stream meets QoE >= q only if its lateness recursion over the delivery times
  (k_j + 1) tau sums to at most (1-q) S_whole (formulations/qoe.py), here in integer ticks
  rounded in the schedule's favour (tau rounded down, ideal times up, the budget up by a tick
  per token), so rounding never excludes a schedule.

Why it is valid: take any engine schedule and keep, for each met request, only its delivery
slots with the KV, sequence and token they use there. Every item above holds for it (other
requests, earlier prefill chunks, paused residents and preemptions only use more), so the set of
met units is feasible here and the optimum here is >= the hindsight optimum. It holds with the
admission gate (a gated schedule is a schedule) and with chunked prefill; it says nothing in
timed mode (no slots), where only the interval relaxation applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from formulations.bounds.windows import TokenWindows
from formulations.exact.slots import instance_time_scale
from formulations.instance import Instance
from formulations.metrics import DEFAULT_QOE_THRESHOLD
from formulations.qoe import whole_area
from formulations.requests import RequestClass
from formulations.arithmetic import ceil_div


@dataclass(frozen=True)
class SlotTokens:
    """One request's delivery slots: token j (index j-1) in [first[j], last[j]] holding kv[j] blocks."""

    unit: int
    first: np.ndarray  # (n,) int
    last: np.ndarray  # (n,) int
    kv: np.ndarray  # (n,) int blocks
    prefill_slots: int  # ceil(P / token_budget): a DAG child's token 1 comes this many slots after its parents
    parents: tuple[int, ...]
    qoe: tuple[np.ndarray, int] | None  # streams: (ideal delivery of each token in ticks, lateness budget in ticks)


@dataclass(frozen=True)
class SlotRelaxation:
    requests: list[SlotTokens | None]  # None: its unit cannot be met (window empty)
    weight: np.ndarray  # (units,)
    alive: np.ndarray  # (units,) bool
    tau_ticks: int
    capacity: tuple[int, int, int]  # kv_blocks, max_seqs, token_budget


def slot_relaxation(instance: Instance, windows: list[TokenWindows], unit: np.ndarray, weight: np.ndarray,
                    alive: np.ndarray, qoe_threshold: float = DEFAULT_QOE_THRESHOLD) -> SlotRelaxation:
    """The relaxation of a slotted instance (see the module docstring); `windows`, `unit`,
    `weight` and `alive` as in intervals.build_relaxation."""
    spec = instance.engine
    tau = spec.slot_time
    if tau is None:
        raise ValueError("the slot relaxation needs slotted mode (engine.slot_time)")
    scale = instance_time_scale(instance, tau)
    tau_t = math.floor(tau * scale + 1e-9)
    alive = alive.copy()
    out: list[SlotTokens | None] = []
    for i, (r, w) in enumerate(zip(instance.requests, windows, strict=True)):
        # token delivered at (k + 1) tau: earliest/latest times -> slots (1e-6 slot of float noise)
        first = np.ceil(w.earliest / tau - 1 - 1e-6).astype(np.int64)
        last = np.floor(w.latest / tau - 1 + 1e-6).astype(np.int64)
        if not alive[unit[i]] or np.any(last < first):
            alive[unit[i]] = False
            out.append(None)
            continue
        kv = np.array([spec.blocks_for(r.prompt_len + j) for j in range(r.output_len)], dtype=np.int64)
        qoe = None
        if r.cls is RequestClass.LATENCY:
            j = np.arange(r.output_len)
            ideal = np.ceil((r.arrival + r.ttft_target + j / r.read_rate) * scale).astype(np.int64)
            budget = math.ceil((1 - qoe_threshold) * whole_area(r.output_len, r.read_rate) * scale) + r.output_len
            qoe = (ideal, budget)
        parents = tuple(int(p) for p in instance.table.parents[i])
        out.append(SlotTokens(int(unit[i]), first, last, kv, ceil_div(r.prompt_len, spec.token_budget), parents, qoe))
    for i, st in enumerate(out):  # a unit with a member out is out whole
        if st is not None and not alive[st.unit]:
            out[i] = None
    return SlotRelaxation(out, weight, alive, tau_t, (spec.kv_blocks, spec.max_seqs, spec.token_budget))
