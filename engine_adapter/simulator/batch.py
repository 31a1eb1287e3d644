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
    new_blocks: int  # blocks allocated for this iteration's growth
    victims: list[int]  # slots the engine preempts for lack of KV (in eviction order)

    def is_steady(self, state: LiveState) -> bool:
        """Only decode steps of resident requests and no eviction: the same batch repeats until
        the next event, so the engine may fast-forward it."""
        return not self.victims and not self.prefill.any() and bool(state.resident[self.slots].all())


def form_batch(state: LiveState, run_slots: np.ndarray, free_blocks: int, spec: EngineSpec) -> Batch:
    """The batch that `run_slots` (a plan's run, as slots) yields now, without changing state."""
    if len(run_slots) == 0:
        return Batch(_EMPTY, _EMPTY, np.empty(0, dtype=bool), 0, [])
    pl = state.prefill_left[run_slots]
    want = np.where(pl > 0, pl, 1)
    cum = np.cumsum(want)
    budget = spec.token_budget
    n = len(run_slots)
    if cum[-1] <= budget:
        take = n
        chunk = want
    else:
        full = int(np.searchsorted(cum, budget, side="right"))
        partial = budget - (int(cum[full - 1]) if full else 0)
        take = full + (partial > 0)
        chunk = want[:take].copy()
        if take > full:
            chunk[full] = partial
    if take > spec.max_seqs:
        take = spec.max_seqs
    slots = run_slots[:take]
    chunk = chunk[:take]
    held = state.kv_blocks[slots]
    bs = spec.block_size
    need = -(-(state.computed[slots] + chunk) // bs) - held
    total = int(need.sum())
    if total <= free_blocks:
        return Batch(slots, chunk, pl[:take] > 0, total, [])
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
    new_blocks = 0
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
        new_blocks += need
        budget -= chunk
        seqs_left -= 1
        slots.append(s)
        chunks.append(chunk)
        prefill.append(prefill_left[s] > 0)
    return Batch(np.array(slots, dtype=np.int64), np.array(chunks, dtype=np.int64),
                 np.array(prefill, dtype=bool), new_blocks, victims)
