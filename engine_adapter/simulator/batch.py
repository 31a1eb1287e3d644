"""Applying a `Plan` to form one iteration's batch, by the rules in formulations/online.py.

`plan.run` is walked in priority order: a request with prefill left gets
min(prefill_left, budget left) tokens, a decoding one 1 token, until the token budget or
max_seqs is used. KV shortage: a resident request evicts victims (resident requests absent from
`run`, most recently admitted first, then resident ones later in `run`, lowest priority first,
else itself); a waiting request is skipped and blocks every later waiting request
(head-of-line blocking).

The common case (everything wanted fits in the free blocks) is decided with cumulative sums;
only a KV shortage falls back to walking the plan one request at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine_adapter.simulator.request_state import LiveState
from formulations.engine_spec import EngineSpec

_EMPTY = np.empty(0, dtype=np.int64)


@dataclass
class Batch:
    """One iteration's decisions, in slots (positions in LiveState), scheduled in run order."""

    slots: np.ndarray  # scheduled slots
    chunk: np.ndarray  # tokens each processes (prefill chunk, or 1 for a decode)
    prefill: np.ndarray  # bool: a prefill chunk (otherwise a decode step)
    any_prefill: bool
    victims: list[int]  # slots the engine preempts for lack of KV (in eviction order)

    def is_steady(self, state: LiveState) -> bool:
        """Only decode steps of resident requests and no eviction: the same batch repeats until
        the next event, so the engine may fast-forward it."""
        if self.victims or self.any_prefill:
            return False
        # a non-resident request has prefill left, except a swapped-out decoding one
        return np.count_nonzero(state.resident[self.slots]) == len(self.slots)


def form_batch(state: LiveState, run_slots: np.ndarray, free_blocks: int, spec: EngineSpec,
               exact_kv: bool) -> Batch:
    """The batch that `run_slots` (a plan's run, as slots) yields now, without changing state.

    exact_kv=False allows skipping the exact KV check when the free blocks obviously suffice
    (each request grows by at most chunk/block_size + 1 blocks); that bound needs every
    non-resident request to hold no tokens, so swap mode passes True.
    """
    n = len(run_slots)
    if n == 0:
        return Batch(_EMPTY, _EMPTY, np.empty(0, dtype=bool), False, [])
    pl = state.prefill_left[run_slots]
    pl_list = pl.tolist()
    prefill_total = sum(pl_list)
    total = prefill_total + pl_list.count(0)  # a decoding request (prefill_left 0) takes 1 token
    # all decoding (a steady batch): every chunk is 1, no prefill (cheaper than the general ops)
    want = np.maximum(pl, 1) if prefill_total else np.ones(n, dtype=np.int64)
    budget = spec.token_budget
    slots = run_slots
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
        slots = run_slots[:take]
        pl = pl[:take]
    if len(slots) > spec.max_seqs:
        slots = slots[: spec.max_seqs]
        chunk = chunk[: spec.max_seqs]
        pl = pl[: spec.max_seqs]
    bs = spec.block_size
    any_prefill = prefill_total > 0 and sum(pl.tolist()) > 0  # (pl may have been cut above)
    prefill = pl > 0 if any_prefill else np.zeros(len(pl), dtype=bool)
    if not exact_kv and free_blocks > total // bs + len(slots):
        return Batch(slots, chunk, prefill, any_prefill, [])
    need = (state.computed[slots] + chunk + (bs - 1)) // bs - state.kv_blocks[slots]
    if sum(need.tolist()) <= free_blocks:
        return Batch(slots, chunk, prefill, any_prefill, [])
    return _walk(state, run_slots, free_blocks, spec)


def _walk(state: LiveState, run_slots: np.ndarray, free: int, spec: EngineSpec) -> Batch:
    """The plan walked request by request (only under KV shortage)."""
    n_live = state.n_live
    bs = spec.block_size
    budget = spec.token_budget
    seqs_left = spec.max_seqs
    run = run_slots.tolist()
    resident = state.resident[:n_live].tolist()
    computed = state.computed[:n_live].tolist()
    prefill_left = state.prefill_left[:n_live].tolist()
    held = state.kv_blocks[:n_live].tolist()
    in_run = np.zeros(n_live, dtype=bool)
    in_run[run_slots] = True
    outside = np.flatnonzero(state.resident[:n_live] & ~in_run)
    outside = outside[np.argsort(-state.admit_seq[outside], kind="stable")].tolist()
    outside.reverse()  # pop() from the end = most recently admitted first
    tail = len(run) - 1
    gone: set[int] = set()
    victims: list[int] = []
    slots: list[int] = []
    chunks: list[int] = []
    prefill: list[bool] = []
    blocked = False  # head-of-line: a waiting request did not fit
    for pos, s in enumerate(run):
        if budget == 0 or seqs_left == 0:
            break
        if s in gone or (blocked and not resident[s]):
            continue
        want = prefill_left[s] or 1
        chunk = min(want, budget)
        need = -(-(computed[s] + chunk) // bs) - held[s]
        if need > free:
            if not resident[s]:
                blocked = True
                continue
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
                free += held[victim]
            if need > free:
                gone.add(s)
                victims.append(s)
                resident[s] = False
                free += held[s]
                continue
        free -= need
        budget -= chunk
        seqs_left -= 1
        slots.append(s)
        chunks.append(chunk)
        prefill.append(prefill_left[s] > 0)
    return Batch(np.array(slots, dtype=np.int64), np.array(chunks, dtype=np.int64),
                 np.array(prefill, dtype=bool), any(prefill), victims)
