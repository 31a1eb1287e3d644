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
from solvers.compiled import kernel
from solvers.knapsack.greedy import greedy_knapsack
from solvers.policies import ranking, signals


def select(view: EngineView, order: np.ndarray) -> np.ndarray:
    """Boolean mask of the requests chosen, taking `order` (view positions) greedily."""
    taken = greedy_knapsack(np.ones(len(view)), signals.kv_weight_columns(view), signals.kv_capacities(view.engine),
                            max_items=view.engine.max_seqs, order=order)
    chosen = np.zeros(len(view), dtype=bool)
    chosen[taken] = True
    return chosen


def shortfall(view: EngineView, chosen: np.ndarray, blocks: np.ndarray) -> float:
    """KV blocks the chosen batch needs beyond the free ones (<= 0: it fits without evictions).
    `blocks`: signals.kv_weights(view)[0]."""
    return shortfall_at(view.resident, chosen, blocks, view.kv_blocks, view.free_blocks)


@kernel
def shortfall_at(resident, chosen, blocks, kv_blocks, free_blocks):
    """shortfall's sum, from the view's columns (for kernels): a resident needs its growth, a
    waiting request all its blocks."""
    need = 0.0
    for i in range(len(chosen)):
        if chosen[i]:
            need += blocks[i] - kv_blocks[i] if resident[i] else blocks[i]
    return need - free_blocks


def victims(view: EngineView, chosen: np.ndarray, evict_rank: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Positions of unchosen residents to preempt so the chosen batch fits (highest rank first).
    `blocks`: signals.kv_weights(view)[0], which the caller has already."""
    return victims_at(view.resident, chosen, evict_rank, blocks, view.kv_blocks, view.free_blocks)


@kernel
def victims_at(resident, chosen, evict_rank, blocks, kv_blocks, free_blocks):
    """victims from the view's columns, in one compiled call (for kernels too)."""
    need = shortfall_at(resident, chosen, blocks, kv_blocks, free_blocks)
    if need <= 0:
        return np.empty(0, dtype=np.int64)
    ranked, freed = eviction_head(resident, chosen, evict_rank, kv_blocks, need)
    return ranked[:enough_count(freed, need)]


def eviction_order(view: EngineView, chosen: np.ndarray, evict_rank: np.ndarray,
                   need: float) -> tuple[np.ndarray, np.ndarray]:
    """Unchosen residents by `evict_rank` (highest first) and the blocks the first k of them free,
    ranked only as far as it takes to free `need` blocks (all of them if that is not enough).
    Unchanged while only waiting requests leave the batch: then one ranking serves every
    smaller need (`enough`)."""
    return eviction_head(view.resident, chosen, evict_rank, view.kv_blocks, float(need))


@kernel
def eviction_head(resident, chosen, evict_rank, kv_blocks, need):
    """eviction_order from the view's columns, in one compiled call (for kernels too): the
    candidates' ranking by -evict_rank, ties by position (ranking.walk_to_sum: heads four times
    longer each try, exact prefixes of np.lexsort's order), and the blocks its first k free."""
    cand = np.flatnonzero(resident & ~chosen)
    keys = np.empty((len(cand), 1))
    for j in range(len(cand)):
        keys[j, 0] = -evict_rank[cand[j]]
    held = kv_blocks[cand]
    first = ranking.walk_to_sum(keys, held, need, ranking.FIRST_HEAD)
    return cand[first], np.cumsum(held[first])


def enough(ranked: np.ndarray, freed: np.ndarray, need: float) -> np.ndarray:
    """The first of `ranked` that free `need` blocks (`freed`: the blocks the first k free)."""
    return ranked[:enough_count(freed, float(need))]


@kernel
def enough_count(freed, need):
    """How many of a ranking free `need` blocks (`freed`: the blocks its first k free, not
    decreasing; all of them when they cannot)."""
    return min(np.searchsorted(freed, need) + 1, len(freed))


def plan_in_order(view: EngineView, order: np.ndarray, recheck_at: float | None = None) -> Plan:
    """Run `order` as the engine walks it: no explicit eviction to admit waiting requests (a
    waiting request gets blocks only when they are free, as in vLLM), so priorities that change
    every step cannot make residents thrash; residents growing past the free blocks evict the
    lowest-priority ones later in the order (the engine's rule)."""
    return Plan(run=view.idx[order], recheck_at=recheck_at)


def all_fit(view: EngineView) -> np.ndarray | None:
    """Every live request in run order (residents first, then by arrival) when all of them fit
    this iteration at once (seats, whole prefill chunks in the token budget, KV growth in the
    free blocks); None when a choice has to be made. It runs at every decision of a policy that
    skips its ranking when there is nothing to choose, so the test is one compiled pass."""
    engine = view.engine
    if len(view) > engine.max_seqs:
        return None
    in_cache = view.computed if view.cached is None else view.computed + view.cached
    if not _fits_at_once(view.release, view.now, view.prefill_after_hits(), in_cache, view.computed, view.kv_blocks,
                         view.resident, view.free_blocks, engine.token_budget, engine.block_size,
                         engine.reserve_full_prompt):
        return None
    return np.lexsort((view.arrival, ~view.resident))


@kernel
def _fits_at_once(release, now, prefill, in_cache, computed, kv_blocks, resident, free_blocks, budget, block_size,
                  reserve_full_prompt):
    """Whether every request is released and their whole chunks (`prefill`: after prefix-cache
    hits, as fill_budget charges them) fit the token budget and their KV growth (a waiting one's:
    the engine's admission blocks) the free blocks."""
    tokens = growth = 0
    for i in range(len(release)):
        if release[i] > now + 1e-12:
            return False
        step = max(min(prefill[i], budget), 1)
        tokens += step
        if resident[i]:
            growth += signals.blocks_for_at(computed[i] + step, block_size) - kv_blocks[i]
        else:
            growth += signals.blocks_to_admit_at(in_cache[i], max(prefill[i], 1), step, 0, block_size,
                                                 reserve_full_prompt)
    return tokens <= budget and growth <= free_blocks


def fill_budget(view: EngineView, chosen: np.ndarray, order: np.ndarray, victims: np.ndarray,
                weights: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The run order of a chosen batch, with the token budget it leaves put to use.

    `order`: the runnable positions a policy may run, in priority order. Decodes run first (one
    token each, as vLLM runs its running requests before its waiting ones), then prefills, each
    taking min(prefill left, budget left): so a prefill shrinks to make room for a decode, and a
    prefill that does not fit whole takes a partial chunk. Residents' prefills come before
    waiting ones' for the same reason (vLLM gives a running request's chunk its tokens before it
    admits anyone, so the vLLM bridge can only realize that order). Requests left out by the batch
    selection are added, in priority order, while a seat is free, their blocks (a waiting one's
    admission blocks: its whole prompt under the full-prompt gate) fit in what is free once the
    batch has grown and `victims` (evicted or rejected: they free their blocks and do not run)
    are gone, and (a decode) every chosen prefill
    keeps at least one token or (a prefill) at least one token is left. A waiting request's chunk
    and blocks are priced after its prefix-cache hit (`view.cached`), as the engine charges them:
    the hit tokens cost no budget, and they are in its blocks already. `weights`:
    signals.kv_weights(view), which the caller has already.
    """
    return fill_at(order, chosen, np.asarray(victims, dtype=np.int64), weights[0], weights[1], fill_columns(view))


def fill_columns(view: EngineView) -> tuple:
    """What `fill_at` reads of a view and its engine, as one tuple (a kernel passes it on whole)."""
    engine = view.engine
    in_cache = view.computed if view.cached is None else view.computed + view.cached
    return (view.kv_blocks, view.prefill_left, view.prefill_after_hits(), in_cache, view.resident, view.free_blocks,
            engine.max_seqs, engine.token_budget, engine.block_size, engine.reserve_full_prompt,
            engine.watermark_blocks)


@kernel
def fill_at(order, chosen, victims, blocks, tokens, columns):
    """fill_budget's walk from the view's columns (`fill_columns`; for kernels)."""
    return _fill(order, chosen, victims, blocks, tokens, *columns)



@kernel
def _fill(order, chosen, victims, blocks, tokens, kv_blocks, prefill_left, prefill_after_hits, in_cache, resident,
          free_blocks, max_seqs, budget, block_size, reserve_full_prompt, watermark_blocks):
    """fill_budget's walk: the chosen batch (`_chosen_in_order`), then the requests left out, in
    `order`, while they fit; returned in run order (`_run_order`; see fill_budget)."""
    run, is_prefill, count, decodes, prefill_tokens, room = _chosen_in_order(
        order, chosen, victims, blocks, tokens, kv_blocks, prefill_left, free_blocks)
    seats = max_seqs - count
    left_out = ~chosen
    left_out[victims] = False
    first_room = room  # a request left out that needs more than this for one token never joins
    waiting_closed = decodes_only = False  # waiting ones queue behind the first that cannot be admitted
    for pos in order:
        if not left_out[pos]:
            continue
        if seats < 1 or count >= budget:
            break
        fits_one = signals.blocks_for_at(in_cache[pos] + 1, block_size) - kv_blocks[pos] <= first_room
        if not resident[pos] and (waiting_closed or not fits_one):
            waiting_closed = True
            continue
        left = prefill_after_hits[pos]
        if not fits_one or (decodes_only and left != 0):
            continue
        chunk = 1 if left == 0 else min(left, budget - decodes - int(prefill_tokens))
        if chunk < 1:  # no budget left for prefills: only decodes can still join
            decodes_only = True
            continue
        if resident[pos]:
            need = signals.blocks_for_at(in_cache[pos] + chunk, block_size) - kv_blocks[pos]
        else:  # the engine's admission check (whole prompt under the full-prompt gate)
            need = signals.blocks_to_admit_at(in_cache[pos], max(left, 1), chunk, kv_blocks[pos], block_size,
                                              reserve_full_prompt)
        if need + (0 if resident[pos] else watermark_blocks) > room:  # the watermark stays free
            waiting_closed = waiting_closed or not resident[pos]
            continue
        room -= need
        seats -= 1
        run[count], is_prefill[count] = pos, left != 0
        count += 1
        if left == 0:
            decodes += 1
        else:
            prefill_tokens += chunk
    return _run_order(run[:count], is_prefill[:count], resident)


@kernel
def _chosen_in_order(order, chosen, victims, blocks, tokens, kv_blocks, prefill_left, free_blocks):
    """The chosen batch as the fill starts from it: its positions in `order` (room for the whole
    order after them), which of them prefill, how many, how many decode, their prefill tokens,
    and the blocks free once it has grown and the victims are gone."""
    run = np.empty(len(order), dtype=np.int64)
    is_prefill = np.zeros(len(order), dtype=np.bool_)
    room = float(free_blocks)
    for pos in victims:
        room += kv_blocks[pos]
    for pos in range(len(chosen)):
        if chosen[pos]:
            room -= blocks[pos] - kv_blocks[pos]  # waiting requests hold none
    count, decodes, prefill_tokens = 0, 0, 0.0
    for pos in order:
        if chosen[pos]:
            run[count], is_prefill[count] = pos, prefill_left[pos] != 0
            count += 1
            if prefill_left[pos] != 0:
                prefill_tokens += tokens[pos]
            else:
                decodes += 1
    return run, is_prefill, count, decodes, prefill_tokens, room


@kernel
def _run_order(run, is_prefill, resident):
    """Decodes first, then prefills: residents' before waiting ones', each in the order joined
    (as vLLM runs its running requests before it admits waiting ones)."""
    out = np.empty(len(run), dtype=np.int64)
    k = 0
    for rank in range(3):
        for j in range(len(run)):
            if (0 if not is_prefill[j] else 1 if resident[run[j]] else 2) == rank:
                out[k] = run[j]
                k += 1
    return out
