"""The one implementation of the plan rules (formulations/online.py, rules 2 and 3).

Both engines call `form_batch`: the simulator with its live-slot columns, the vLLM bridge with
the columns of the `EngineView` it built (after applying the plan's own preemptions). It works
on plain arrays indexed by position (slot or view column) and changes none of them.

`run` is walked in priority order: a request with prefill left gets min(prefill_left, budget
left) tokens, a decoding one 1 token, until the token budget or max_seqs is used. KV shortage:
a resident request evicts victims (resident requests absent from `run`, most recently admitted
first, then resident ones later in `run`, lowest priority first, else itself); a waiting request
that does not pass the admission check is skipped and blocks every later waiting request
(head-of-line blocking), and once the engine has evicted a victim no waiting request is admitted
in that iteration (vLLM admits nothing in a step that preempted). The admission check of a
waiting request is vLLM's `allocate_slots` (formulations.online.admission_blocks, with which
the policies price a waiting request's KV too).

The common case (every request wanted fits, no waiting request to gate against a watermark) is
decided with cumulative sums; only a KV shortage walks the plan one request at a time. Both are
compiled (numba): the bridge runs them before every vLLM step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from formulations.engine_spec import EngineSpec
from solvers.compiled import kernel
from solvers.policies.signals import blocks_for_at, blocks_to_admit_at

_EMPTY = np.empty(0, dtype=np.int64)


@dataclass
class Batch:
    """One iteration's decisions, as positions into the columns given, in run order."""

    slots: np.ndarray  # scheduled positions
    chunk: np.ndarray  # tokens each processes (prefill chunk, or 1 for a decode)
    prefill: np.ndarray  # bool: a prefill chunk (otherwise a decode step)
    any_prefill: bool
    victims: list[int]  # positions the engine preempts for lack of KV (in eviction order)
    blocked: int | None = None  # the first waiting position that found no KV room


def form_batch(run: np.ndarray, n_live: int, resident: np.ndarray, computed: np.ndarray, prefill_left: np.ndarray,
               kv_blocks: np.ndarray, admit_order: np.ndarray, free_blocks: int, spec: EngineSpec,
               exact_kv: bool, freed: Callable[[], np.ndarray] | None = None) -> Batch:
    """The batch that `run` (positions in priority order) yields now.

    Positions 0..n_live-1 of the columns are the live requests (the columns may be longer: the
    simulator passes its preallocated arrays, unsliced, as the common case reads only `run`'s
    positions). `admit_order` ranks when each position last became resident (larger: later). exact_kv=False allows skipping the exact KV check
    when the free blocks obviously suffice (each request grows by at most want/block_size + 1
    blocks); that bound needs every non-resident request to hold no tokens, so swap mode passes
    True. `freed()`: per live position, the blocks preempting it would return to the free pool,
    when that differs from the blocks it holds (prefix caching: blocks shared with another running
    request stay taken); None: all it holds. Asked only when the walk runs (a KV shortage).
    """
    if len(run) == 0:
        return Batch(_EMPTY, _EMPTY, np.empty(0, dtype=bool), False, [])
    engine = (spec.block_size, spec.token_budget, spec.max_seqs, spec.watermark_blocks, spec.reserve_full_prompt)
    if freed is None:  # both cases in one compiled call (the bridge walks most steps under KV pressure)
        slots, chunk, prefill, any_prefill, victims, blocked = _batch(
            run, n_live, resident, computed, prefill_left, kv_blocks, admit_order, free_blocks, *engine, exact_kv)
        return Batch(slots, chunk, prefill, any_prefill, victims.tolist(), None if blocked < 0 else int(blocked))
    slots, chunk, prefill, any_prefill, fits = _common_case(
        run, resident, computed, prefill_left, kv_blocks, free_blocks, *engine, exact_kv)
    if fits:
        return Batch(slots, chunk, prefill, any_prefill, [])
    slots, chunk, prefill, victims, blocked = _walk_each(
        run, resident[:n_live], computed[:n_live], prefill_left[:n_live], kv_blocks[:n_live], freed(),
        admit_order[:n_live], free_blocks, *engine)
    return Batch(slots, chunk, prefill, bool(prefill.any()), victims.tolist(), None if blocked < 0 else int(blocked))


@kernel
def _batch(run, n_live, resident, computed, prefill_left, kv_blocks, admit_order, free_blocks, bs, budget, max_seqs,
           watermark, reserve_full_prompt, exact_kv):
    """form_batch without prefix caching (preempting a position frees what it holds): the common
    case, else the walk; (slots, chunk, prefill, any_prefill, victims, blocked position or -1).
    One compiled call: after a model step each call costs 5-15 us (cold caches)."""
    slots, chunk, prefill, any_prefill, fits = _common_case(
        run, resident, computed, prefill_left, kv_blocks, free_blocks, bs, budget, max_seqs, watermark,
        reserve_full_prompt, exact_kv)
    if fits:
        return slots, chunk, prefill, any_prefill, np.empty(0, dtype=np.int64), -1
    held = kv_blocks[:n_live]
    slots, chunk, prefill, victims, blocked = _walk_each(
        run, resident[:n_live], computed[:n_live], prefill_left[:n_live], held, held, admit_order[:n_live],
        free_blocks, bs, budget, max_seqs, watermark, reserve_full_prompt)
    return slots, chunk, prefill, prefill.any(), victims, blocked


@kernel
def _common_case(run, resident, computed, prefill_left, kv_blocks, free_blocks, bs, budget, max_seqs, watermark,
                 reserve_full_prompt, exact_kv):
    """The batch when every request wanted fits: (slots, chunk, prefill, any_prefill, fits); with
    fits False the plan must be walked. Compiled: as numpy expressions this cost ~50 us a step."""
    n = len(run)
    pl = prefill_left[run]
    prefill_total = pl.sum()
    total = prefill_total + np.count_nonzero(pl == 0)  # a decoding request (prefill_left 0) takes 1 token
    want = np.maximum(pl, 1)
    slots = run
    chunk = want
    if total > budget:
        cum = want.cumsum()
        full = np.searchsorted(cum, budget, side="right")
        partial = budget - (cum[full - 1] if full else 0)
        take = full + (partial > 0)
        chunk = want[:take].copy()
        if take > full:
            chunk[full] = partial
        total = budget
        slots = run[:take]
        pl = pl[:take]
    if len(slots) > max_seqs:
        slots = slots[:max_seqs]
        chunk = chunk[:max_seqs]
        pl = pl[:max_seqs]
    any_prefill = prefill_total > 0 and pl.sum() > 0  # (pl may have been cut above)
    prefill = pl > 0
    # the full-prompt gate can ask a waiting request for up to want/bs + 1 blocks: still bounded
    # by the tokens wanted (prefill_total covers every prefill in the run)
    bound = prefill_total + n if reserve_full_prompt and any_prefill else total
    if not exact_kv and watermark == 0 and free_blocks > bound // bs + len(slots):
        return slots, chunk, prefill, any_prefill, True
    need = (computed[slots] + chunk + (bs - 1)) // bs - kv_blocks[slots]
    fits = need.sum() <= free_blocks and _gate_passes(slots, need, resident, computed, pl, kv_blocks, free_blocks, bs,
                                                      watermark, reserve_full_prompt)
    return slots, chunk, prefill, any_prefill, fits


@kernel
def _gate_passes(slots, need, resident, computed, pl, held, free, bs, watermark, reserve_full_prompt):
    """Whether every waiting request in the batch passes its admission check (no eviction needed).

    Without the full-prompt gate and watermark that check is its chunk's blocks, already counted.
    """
    if not (reserve_full_prompt or watermark):
        return True
    waiting = ~resident[slots]
    if not waiting.any():
        return True
    if watermark:
        return False  # whether the watermark applies depends on the walk: let it decide
    gate = (computed[slots] + np.maximum(pl, 1) + (bs - 1)) // bs - held[slots]
    before = need.cumsum() - need  # blocks taken by the requests ahead in the batch
    return bool((before[waiting] + gate[waiting] <= free).all())


@kernel
def _walk_each(run, resident_col, computed, prefill_left, held, freed, admit_order, free, bs, budget, seqs_left,
               watermark, reserve_full_prompt):
    """form_batch's rules one request at a time: (slots, chunks, prefill, victims, blocked
    position or -1). Compiled: as a Python loop it was the bridge's largest cost under KV
    pressure."""
    n_live = len(resident_col)
    resident = resident_col.copy()
    in_run = np.zeros(n_live, dtype=np.bool_)
    in_run[run] = True
    outside = np.flatnonzero(resident & ~in_run)
    outside = outside[np.argsort(admit_order[outside], kind="mergesort")]  # taken from the end: most recent
    n_outside = len(outside)
    holders = np.count_nonzero(resident)  # requests holding KV (vLLM applies the watermark only if one does)
    tail = len(run) - 1
    # past the last resident request in `run`, once admission has closed, every request is
    # skipped: the walk ends there (a long plan of waiting requests costs nothing)
    last_resident = -1
    for pos in range(len(run)):
        if resident[run[pos]]:
            last_resident = pos
    gone = np.zeros(n_live, dtype=np.bool_)
    victims = np.empty(n_live, dtype=np.int64)
    n_victims = 0
    slots = np.empty(len(run), dtype=np.int64)
    chunks = np.empty(len(run), dtype=np.int64)
    prefill = np.empty(len(run), dtype=np.bool_)
    n_slots = 0
    blocked = -1  # head-of-line: a waiting request did not fit
    for pos in range(len(run)):
        s = run[pos]
        closed = blocked >= 0 or n_victims > 0
        if budget == 0 or seqs_left == 0 or (pos > last_resident and closed):
            break
        if gone[s] or (closed and not resident[s]):
            continue
        want = prefill_left[s] if prefill_left[s] != 0 else 1
        chunk = min(want, budget)
        need = blocks_for_at(computed[s] + chunk, bs) - held[s]
        if not resident[s]:
            gate = blocks_to_admit_at(computed[s], want, chunk, held[s], bs, reserve_full_prompt)
            if max(need, gate + (watermark if holders else 0)) > free:
                blocked = s
                continue
            holders += 1
        elif need > free:
            while need > free:
                victim = -1
                if n_outside:
                    n_outside -= 1
                    victim = outside[n_outside]
                else:
                    while tail > pos:
                        cand = run[tail]
                        tail -= 1
                        if resident[cand] and not gone[cand]:
                            victim = cand
                            break
                if victim < 0:
                    break
                gone[victim] = True
                victims[n_victims] = victim
                n_victims += 1
                resident[victim] = False
                free += freed[victim]
                holders -= 1
            if need > free:
                gone[s] = True
                victims[n_victims] = s
                n_victims += 1
                resident[s] = False
                free += freed[s]
                holders -= 1
                continue
        free -= need
        budget -= chunk
        seqs_left -= 1
        slots[n_slots] = s
        chunks[n_slots] = chunk
        prefill[n_slots] = prefill_left[s] > 0
        n_slots += 1
    return slots[:n_slots], chunks[:n_slots], prefill[:n_slots], victims[:n_victims], blocked
