"""Turn a policy's `Plan` into one iteration's batch by the engine rules of formulations/online.py.

vLLM builds its batch in its own order (running requests first, then waiting ones) and picks
its own preemption victim (the last running request). To make vLLM run *the plan's* batch, the
bridge first works the batch out here, following the rules exactly (plan preemptions, the
walk in priority order with chunked prefill, KV-driven victims, head-of-line blocking of
waiting requests), then hands vLLM only that: victims already preempted, running and waiting
queues holding just the chosen requests in plan order. vLLM's own allocation then succeeds
for every chosen request. No vLLM import: it is tested against hand-worked cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, Plan, PlanError


@dataclass
class BatchDecision:
    """Positions refer to columns of the EngineView the plan answered."""

    preempt: list[int] = field(default_factory=list)  # plan preemptions first, then KV victims
    run: list[tuple[int, int]] = field(default_factory=list)  # (position, tokens), plan order
    blocked: int | None = None  # the waiting request that found no KV room (admission stops there)


def next_tokens(view: EngineView) -> np.ndarray:
    """Tokens each live request computes when it runs: its prefill left, or one decode token."""
    return np.where(view.prefill_left > 0, view.prefill_left, 1)


def decide_batch(view: EngineView, plan: Plan, admitted_at: np.ndarray) -> BatchDecision:
    """Apply the plan rules to `view`; `admitted_at[k]` is when column k last became resident."""
    engine: EngineSpec = view.engine
    position = {int(r): k for k, r in enumerate(view.idx)}
    run = _positions(plan.run, position, "run")
    preempt = _positions(plan.preempt, position, "preempt")
    if len(set(run)) != len(run) or len(set(preempt)) != len(preempt):
        raise PlanError("plan.run or plan.preempt names a request twice")
    if set(run) & set(preempt):
        raise PlanError("a request is both in plan.run and plan.preempt")
    if preempt and not view.resident[preempt].all():
        bad = next(k for k in preempt if not view.resident[k])
        raise PlanError(f"plan.preempt names request {int(view.idx[bad])}, which holds no KV blocks")

    resident = view.resident.copy()
    blocks = view.kv_blocks.astype(np.int64).copy()
    free = int(view.free_blocks)
    need = next_tokens(view)
    decision = BatchDecision()

    def evict(k: int) -> None:
        nonlocal free
        free += int(blocks[k])
        blocks[k] = 0
        resident[k] = False
        decision.preempt.append(k)

    for k in preempt:
        evict(k)
    in_run = np.zeros(len(view.idx), dtype=bool)
    in_run[run] = True
    budget, seqs = engine.token_budget, 0
    for pos, k in enumerate(run):
        if budget == 0 or seqs == engine.max_seqs:
            break
        if k in decision.preempt:  # lost its KV in this iteration: not brought back in the same one
            continue
        tokens = int(min(need[k], budget))
        extra = engine.blocks_for(int(view.computed[k]) + tokens) - int(blocks[k])
        if not resident[k]:
            if decision.blocked is not None:
                continue
            if extra > free:
                decision.blocked = k
                continue
        else:
            lost = False
            while extra > free and not lost:
                victim = _victim(resident, in_run, admitted_at, run[pos + 1:], k)
                evict(victim)
                lost = victim == k
            if lost:
                continue
        free -= extra
        blocks[k] += extra
        decision.run.append((k, tokens))
        budget -= tokens
        seqs += 1
    return decision


def _victim(resident: np.ndarray, in_run: np.ndarray, admitted_at: np.ndarray, later: list[int], k: int) -> int:
    """Resident requests absent from the plan (most recently admitted first), then those later in
    the plan (lowest priority first), else the request itself."""
    idle = np.flatnonzero(resident & ~in_run)
    if len(idle):
        return int(idle[np.argmax(admitted_at[idle])])
    for j in reversed(later):
        if resident[j]:
            return j
    return k


def _positions(indices: np.ndarray, position: dict[int, int], name: str) -> list[int]:
    out = []
    for r in np.asarray(indices, dtype=np.int64):
        k = position.get(int(r))
        if k is None:
            raise PlanError(f"plan.{name} names request {int(r)}, which is not live")
        out.append(k)
    return out
