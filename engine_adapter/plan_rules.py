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
decided with cumulative sums; only a KV shortage walks the plan one request at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import admission_blocks

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
               exact_kv: bool, freed: Callable[[int], int] | None = None) -> Batch:
    """The batch that `run` (positions in priority order) yields now.

    Positions 0..n_live-1 of the columns are the live requests (the columns may be longer: the
    simulator passes its preallocated arrays, unsliced, as the common case reads only `run`'s
    positions). `admit_order` ranks when each position last became resident (larger: later). exact_kv=False allows skipping the exact KV check
    when the free blocks obviously suffice (each request grows by at most want/block_size + 1
    blocks); that bound needs every non-resident request to hold no tokens, so swap mode passes
    True. `freed(position)`: the blocks a preempted request returns to the free pool, when that
    differs from the blocks it holds (prefix caching: blocks shared with another running request
    stay taken); None: all it holds.
    """
    n = len(run)
    if n == 0:
        return Batch(_EMPTY, _EMPTY, np.empty(0, dtype=bool), False, [])
    pl = prefill_left[run]
    pl_list = pl.tolist()
    prefill_total = sum(pl_list)
    total = prefill_total + pl_list.count(0)  # a decoding request (prefill_left 0) takes 1 token
    # all decoding (a steady batch): every chunk is 1, no prefill (cheaper than the general ops)
    want = np.maximum(pl, 1) if prefill_total else np.ones(n, dtype=np.int64)
    budget = spec.token_budget
    slots = run
    chunk = want
    if total > budget:
        cum = want.cumsum()
        full = int(cum.searchsorted(budget, side="right"))
        partial = budget - (int(cum[full - 1]) if full else 0)
        take = full + (partial > 0)
        chunk = want[:take].copy()
        if take > full:
            chunk[full] = partial
        total = budget
        slots = run[:take]
        pl = pl[:take]
    if len(slots) > spec.max_seqs:
        slots = slots[: spec.max_seqs]
        chunk = chunk[: spec.max_seqs]
        pl = pl[: spec.max_seqs]
    bs = spec.block_size
    any_prefill = prefill_total > 0 and sum(pl.tolist()) > 0  # (pl may have been cut above)
    prefill = pl > 0 if any_prefill else np.zeros(len(pl), dtype=bool)
    # the full-prompt gate can ask a waiting request for up to want/bs + 1 blocks: still bounded
    # by the tokens wanted (prefill_total covers every prefill in the run)
    bound = prefill_total + n if spec.reserve_full_prompt and any_prefill else total
    if not exact_kv and spec.watermark_blocks == 0 and free_blocks > bound // bs + len(slots):
        return Batch(slots, chunk, prefill, any_prefill, [])
    need = (computed[slots] + chunk + (bs - 1)) // bs - kv_blocks[slots]
    if sum(need.tolist()) <= free_blocks and _gate_passes(slots, need, chunk, resident, computed, pl, kv_blocks,
                                                          free_blocks, spec):
        return Batch(slots, chunk, prefill, any_prefill, [])
    return _walk(run, resident[:n_live], computed[:n_live], prefill_left[:n_live], kv_blocks[:n_live],
                 admit_order[:n_live], free_blocks, spec, freed)


def _gate_passes(slots: np.ndarray, need: np.ndarray, chunk: np.ndarray, resident: np.ndarray,
                 computed: np.ndarray, pl: np.ndarray, held: np.ndarray, free: int, spec: EngineSpec) -> bool:
    """Whether every waiting request in the batch passes its admission check (no eviction needed).

    Without the full-prompt gate and watermark that check is its chunk's blocks, already counted.
    """
    if not (spec.reserve_full_prompt or spec.watermark_blocks):
        return True
    waiting = ~resident[slots]
    if not waiting.any():
        return True
    if spec.watermark_blocks:
        return False  # whether the watermark applies depends on the walk: let it decide
    bs = spec.block_size
    gate = (computed[slots] + np.maximum(pl, 1) + (bs - 1)) // bs - held[slots]
    before = need.cumsum() - need  # blocks taken by the requests ahead in the batch
    return bool((before[waiting] + gate[waiting] <= free).all())


def _walk(run_positions: np.ndarray, resident_col: np.ndarray, computed_col: np.ndarray, prefill_col: np.ndarray,
          held_col: np.ndarray, admit_order: np.ndarray, free: int, spec: EngineSpec,
          freed: Callable[[int], int] | None) -> Batch:
    """The plan walked request by request (plain lists: this runs every step under KV pressure)."""
    bs = spec.block_size
    budget = spec.token_budget
    seqs_left = spec.max_seqs
    watermark = spec.watermark_blocks
    run = run_positions.tolist()
    resident = resident_col.tolist()
    computed = computed_col.tolist()
    prefill_left = prefill_col.tolist()
    held = held_col.tolist()
    in_run = np.zeros(len(resident), dtype=bool)
    in_run[run_positions] = True
    outside = np.flatnonzero(resident_col & ~in_run)
    outside = outside[np.argsort(admit_order[outside], kind="stable")].tolist()  # pop(): most recent
    holders = sum(resident)  # requests holding KV (vLLM applies the watermark only if one does)
    tail = len(run) - 1
    # past the last resident request in `run`, once admission has closed, every request is
    # skipped: the walk ends there (a long plan of waiting requests costs nothing)
    run_resident = np.flatnonzero(resident_col[run_positions])
    last_resident = int(run_resident[-1]) if len(run_resident) else -1
    gone: set[int] = set()
    victims: list[int] = []
    slots: list[int] = []
    chunks: list[int] = []
    prefill: list[bool] = []
    blocked: int | None = None  # head-of-line: a waiting request did not fit
    for pos, s in enumerate(run):
        if budget == 0 or seqs_left == 0 or (pos > last_resident and (blocked is not None or victims)):
            break
        if s in gone or ((blocked is not None or victims) and not resident[s]):
            continue
        want = prefill_left[s] or 1
        chunk = min(want, budget)
        need = -(-(computed[s] + chunk) // bs) - held[s]
        if not resident[s]:
            gate = admission_blocks(computed[s], want, chunk, held[s], spec) + (watermark if holders else 0)
            if max(need, gate) > free:
                blocked = s
                continue
            holders += 1
        elif need > free:
            while need > free:
                victim = None
                if outside:
                    victim = outside.pop()
                else:
                    while tail > pos:
                        cand = run[tail]
                        tail -= 1
                        if resident[cand] and cand not in gone:
                            victim = cand
                            break
                if victim is None:
                    break
                gone.add(victim)
                victims.append(victim)
                resident[victim] = False
                free += held[victim] if freed is None else freed(victim)
                holders -= 1
            if need > free:
                gone.add(s)
                victims.append(s)
                resident[s] = False
                free += held[s] if freed is None else freed(s)
                holders -= 1
                continue
        free -= need
        budget -= chunk
        seqs_left -= 1
        slots.append(s)
        chunks.append(chunk)
        prefill.append(prefill_left[s] > 0)
    return Batch(np.array(slots, dtype=np.int64), np.array(chunks, dtype=np.int64),
                 np.array(prefill, dtype=bool), any(prefill), victims, blocked)
