"""Turn a policy's `Plan` into one iteration's batch on the bridge's `EngineView`.

vLLM builds its batch in its own order (running requests first, then waiting ones) and picks
its own preemption victim (the last running request). To make vLLM run *the plan's* batch, the
bridge first works the batch out here: the plan's own preemptions, then the rules every engine
applies (engine_adapter/plan_rules.py, the one implementation the simulator uses too). It then
hands vLLM only that: victims already preempted, running and waiting queues holding just the
chosen requests in plan order. vLLM's own allocation then succeeds for every chosen request.
No vLLM import: it is tested against hand-worked cases and the simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine_adapter.plan_rules import form_batch
from formulations.online import EngineView, Plan, PlanError
from solvers.compiled import kernel

_EMPTY = np.empty(0, dtype=np.int64)


@dataclass
class BatchDecision:
    """Positions refer to columns of the EngineView the plan answered."""

    preempt: list[int]  # plan preemptions first, then KV victims
    run: np.ndarray  # positions that run, plan order
    tokens: np.ndarray  # tokens each of `run` processes
    blocked: int | None  # the waiting request that found no KV room (admission stops there)
    any_prefill: bool  # a request in `run` prefills (plan_rules.Batch.any_prefill)
    # with prefix caching: the waiting positions of the plan's run, in run order, that the engine
    # itself admits from (each looked up again at its turn, after the allocations before it: hits
    # on blocks computed in this step), as many as the sequences left beside the batch's resident
    # ones (the engine admits no more); none when the engine evicted a victim
    admit_from: list[int]


@dataclass
class PrefixHits:
    """Prefix caching's part of the plan rules' input, as it stands once the plan's own
    preemptions are done (their blocks stay cached while free, so they may turn free or stay
    taken by a sharer): per view column the hit tokens and the hit blocks other requests hold
    (not free; both None: no request has a hit), the free blocks, and the blocks preempting a
    column would return to the free pool (None: all it holds, when no block has two holders).
    The simulator's equivalent: engine_adapter/simulator/prefix_cache.py."""

    cached: np.ndarray | None
    hit_held: np.ndarray | None
    free_blocks: int
    freed: Callable[[], np.ndarray] | None


def decide_batch(view: EngineView, plan: Plan, admitted_at: np.ndarray,
                 hits: Callable[[np.ndarray], PrefixHits] | None = None) -> BatchDecision:
    """Apply the plan rules to `plan` on `view` (`batch_at` on the plan's columns)."""
    run, preempt = plan_columns(view.idx, plan)
    return batch_at(view, run, preempt, admitted_at, hits)


def plan_columns(idx: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """The columns of the view's request indices `idx` that the plan runs (plan order) and
    preempts; PlanError for a request not live or named twice."""
    return _positions(idx, plan.run, "run"), _positions(idx, plan.preempt, "preempt")


def batch_at(view: EngineView, run: np.ndarray, preempt: np.ndarray, admitted_at: np.ndarray,
             hits: Callable[[np.ndarray], PrefixHits] | None = None) -> BatchDecision:
    """Apply the plan rules to `view` for the columns `run` (priority order) with the columns
    `preempt` preempted first; `admitted_at[k]` is when column k last became resident.

    `hits(preempt)`: with prefix caching, the hits given the plan's preempted columns; a waiting
    request is then seen holding its hit (its tokens computed), as the simulator sees it."""
    n = len(view.idx)
    resident, kv_blocks, free = view.resident, view.kv_blocks, int(view.free_blocks)
    if len(preempt):
        shared, not_resident = _preempt_faults(run, preempt, resident)
        if shared:
            raise PlanError("a request is both in plan.run and plan.preempt")
        if not_resident >= 0:
            raise PlanError(f"plan.preempt names request {int(view.idx[not_resident])}, which holds no KV blocks")
        free += int(kv_blocks[preempt].sum())
        resident, kv_blocks = resident.copy(), kv_blocks.copy()
        resident[preempt] = False
        kv_blocks[preempt] = 0
    computed, prefill_left, freed = view.computed, view.prefill_left, None
    if hits is not None:
        after = hits(preempt)
        free, freed = after.free_blocks, after.freed
        if after.cached is not None:
            computed, prefill_left = computed + after.cached, prefill_left - after.cached
            kv_blocks = kv_blocks + after.hit_held
    batch = form_batch(run, n, resident, computed, prefill_left, kv_blocks, admitted_at, free, view.engine,
                       exact_kv=True, freed=freed)
    admit_from = []
    if hits is not None and not batch.victims:
        seqs_left = view.engine.max_seqs - int(np.count_nonzero(resident[batch.slots]))
        admit_from = run[~resident[run]][:max(0, seqs_left)].tolist()
    return BatchDecision(preempt=preempt.tolist() + batch.victims, run=batch.slots, tokens=batch.chunk,
                         blocked=batch.blocked, any_prefill=batch.any_prefill, admit_from=admit_from)


def _positions(idx: np.ndarray, requests: np.ndarray, name: str) -> np.ndarray:
    """Columns of the view holding the request indices `requests`; PlanError for any not live or
    named twice."""
    requests = np.asarray(requests, dtype=np.int64)
    if len(requests) == 0:
        return _EMPTY
    found, missing, twice = columns_of(idx, requests)
    if missing >= 0:
        raise PlanError(f"plan.{name} names request {int(requests[missing])}, which is not live")
    if twice:
        raise PlanError(f"plan.{name} names a request twice")
    return found


@kernel
def _preempt_faults(run, preempt, resident):
    """Whether a column is in both `run` and `preempt`, and the first column of `preempt` that is
    not resident (-1: none). Compiled: np.isin alone cost ~0.2 ms per plan with preemptions."""
    in_run = np.zeros(len(resident), dtype=np.bool_)
    for k in run:
        in_run[k] = True
    shared, not_resident = False, -1
    for k in preempt:
        shared = shared or in_run[k]
        if not_resident < 0 and not resident[k]:
            not_resident = k
    return shared, not_resident


@kernel
def columns_of(idx, requests):
    """The column of each of `requests` in `idx` (distinct request indices; -1: not there), the
    position in `requests` of the first one not in `idx` (-1: none) and whether one is named
    twice (events.HeldPlan keeps the live ones of a held plan's run with it too).
    Compiled: as numpy expressions this cost a dozen interpreter round trips per step, a sizeable
    part of the bridge's time."""
    order = np.argsort(idx)
    ordered = idx[order]
    at = np.searchsorted(ordered, requests)
    found = np.full(len(requests), -1, dtype=np.int64)
    seen = np.zeros(len(idx), dtype=np.bool_)
    missing = -1
    twice = False
    for j in range(len(requests)):
        if at[j] < len(idx) and ordered[at[j]] == requests[j]:
            column = order[at[j]]
            twice = twice or seen[column]
            seen[column] = True
            found[j] = column
        elif missing < 0:
            missing = j
    return found, missing, twice
