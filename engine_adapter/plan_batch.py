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
    """Apply the plan rules to `view`; `admitted_at[k]` is when column k last became resident.

    The common case (no plan preemption, everything the budget admits fits in the free blocks)
    is decided with cumulative sums; only a KV shortage walks the plan request by request."""
    run = _positions(view.idx, plan.run, "run")
    preempt = _positions(view.idx, plan.preempt, "preempt")
    n = len(view.idx)
    if (len(run) and np.bincount(run, minlength=n).max() > 1) or (
            len(preempt) and np.bincount(preempt, minlength=n).max() > 1):
        raise PlanError("plan.run or plan.preempt names a request twice")
    if len(preempt):
        if np.isin(preempt, run).any():
            raise PlanError("a request is both in plan.run and plan.preempt")
        if not view.resident[preempt].all():
            bad = preempt[~view.resident[preempt]][0]
            raise PlanError(f"plan.preempt names request {int(view.idx[bad])}, which holds no KV blocks")
    engine: EngineSpec = view.engine
    if len(run) and not len(preempt):
        want = next_tokens(view)[run]
        cum = np.cumsum(want)
        budget = engine.token_budget
        if cum[-1] <= budget:
            chunk = want
        else:
            full = int(np.searchsorted(cum, budget, side="right"))
            left = budget - (int(cum[full - 1]) if full else 0)
            chunk = want[: full + (left > 0)].copy()
            if left > 0:
                chunk[full] = left
        chunk = chunk[: engine.max_seqs]
        taken = run[: len(chunk)]
        grow = -(-(view.computed[taken] + chunk) // engine.block_size) - view.kv_blocks[taken]
        if int(grow.sum()) <= view.free_blocks:
            return BatchDecision(run=list(zip(taken.tolist(), chunk.tolist(), strict=True)))
    return _walk(view, run.tolist(), preempt.tolist(), admitted_at)


def _walk(view: EngineView, run: list[int], preempt: list[int], admitted_at: np.ndarray) -> BatchDecision:
    """The plan walked request by request (plain lists: this runs every step under KV pressure)."""
    engine: EngineSpec = view.engine
    resident = view.resident.tolist()
    blocks = view.kv_blocks.tolist()
    need = next_tokens(view).tolist()
    computed = view.computed.tolist()
    free = int(view.free_blocks)
    in_run = set(run)
    # victims outside the plan: most recently admitted first (popped from the end)
    idle = [k for k in np.argsort(admitted_at, kind="stable").tolist() if resident[k] and k not in in_run]
    gone: set[int] = set()
    decision = BatchDecision()

    def evict(k: int) -> None:
        nonlocal free
        free += blocks[k]
        blocks[k] = 0
        resident[k] = False
        gone.add(k)
        decision.preempt.append(k)

    for k in preempt:
        evict(k)
    tail = len(run) - 1
    # past the last resident request, a blocked waiting request blocks all the rest
    last_resident = max((pos for pos, k in enumerate(run) if resident[k]), default=-1)
    budget, seqs = engine.token_budget, 0
    bs = engine.block_size
    for pos, k in enumerate(run):
        if budget == 0 or seqs == engine.max_seqs or (decision.blocked is not None and pos > last_resident):
            break
        if k in gone or (decision.blocked is not None and not resident[k]):
            continue  # lost its KV in this iteration / behind a waiting request that did not fit
        tokens = min(need[k], budget)
        extra = -(-(computed[k] + tokens) // bs) - blocks[k]
        if extra > free:
            if not resident[k]:
                decision.blocked = k
                continue
            while extra > free:
                victim = k
                while idle and victim == k:
                    candidate = idle.pop()
                    if resident[candidate]:
                        victim = candidate
                while victim == k and tail > pos:
                    if resident[run[tail]]:
                        victim = run[tail]
                    tail -= 1
                evict(victim)
                if victim == k:
                    break
            if k in gone:
                continue
        free -= extra
        blocks[k] += extra
        decision.run.append((k, tokens))
        budget -= tokens
        seqs += 1
    return decision


def _positions(idx: np.ndarray, requests: np.ndarray, name: str) -> np.ndarray:
    """Columns of the view holding the request indices `requests`; PlanError for any not live."""
    requests = np.asarray(requests, dtype=np.int64)
    if len(requests) == 0:
        return np.empty(0, dtype=np.int64)
    if len(idx) == 0:
        raise PlanError(f"plan.{name} names request {int(requests[0])}, which is not live")
    order = np.argsort(idx, kind="stable")
    found = order[np.minimum(np.searchsorted(idx[order], requests), len(idx) - 1)]
    missing = idx[found] != requests
    if missing.any():
        raise PlanError(f"plan.{name} names request {int(requests[missing][0])}, which is not live")
    return found
