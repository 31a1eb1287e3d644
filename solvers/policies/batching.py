"""Turning a priority order into a plan: batch selection and the evictions it needs.

Shared by the priority policies. The batch is a 2-D knapsack over KV blocks (every chosen
request's blocks after this iteration) and the token budget (its prefill chunk or 1 decode
token), at most max_seqs items, taken greedily in the given order. Residents left out keep their
blocks and pause; only when the chosen batch needs more blocks than are free are some of them
preempted, the least valuable first (an explicit choice: the engine's fallback would evict the
most recently admitted instead).
"""

from __future__ import annotations

import numpy as np

from formulations.online import EngineView, Plan
from solvers.knapsack.greedy import greedy_knapsack
from solvers.policies import signals


def select(view: EngineView, order: np.ndarray) -> np.ndarray:
    """Boolean mask of the requests chosen, taking `order` (view positions) greedily."""
    blocks, tokens = signals.kv_weights(view)
    weights = np.stack([blocks, tokens], axis=1)
    caps = np.array([view.engine.kv_blocks, view.engine.token_budget], dtype=np.float64)
    taken = greedy_knapsack(np.ones(len(view)), weights, caps, max_items=view.engine.max_seqs, order=order)
    chosen = np.zeros(len(view), dtype=bool)
    chosen[taken] = True
    return chosen


def victims(view: EngineView, chosen: np.ndarray, evict_rank: np.ndarray) -> np.ndarray:
    """Positions of unchosen residents to preempt so the chosen batch fits (highest rank first)."""
    blocks, _ = signals.kv_weights(view)
    need = float(np.where(view.resident, blocks - view.kv_blocks, blocks)[chosen].sum()) - view.free_blocks
    if need <= 0:
        return np.empty(0, dtype=np.int64)
    cand = np.flatnonzero(view.resident & ~chosen)
    cand = cand[np.argsort(-evict_rank[cand], kind="stable")]
    k = int(np.searchsorted(np.cumsum(view.kv_blocks[cand]), need, side="left")) + 1
    return cand[:k]


def plan_in_order(view: EngineView, order: np.ndarray, recheck_at: float | None = None) -> Plan:
    """Run `order` as the engine walks it: no explicit eviction to admit waiting requests (a
    waiting request gets blocks only when they are free, as in vLLM), so priorities that change
    every step cannot make residents thrash; residents growing past the free blocks evict the
    lowest-priority ones later in the order (the engine's rule)."""
    return Plan(run=view.idx[order], recheck_at=recheck_at)
