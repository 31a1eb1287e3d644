"""The bridge's prefix-cache input, read from vLLM's KV cache manager without changing it: each
waiting request's hit now (the view's `cached` column) and the plan rules' `PrefixHits` once the
plan's preemptions are done.

Why not simply ask vLLM for every waiting request's hit each step: vLLM's lookup costs a few
microseconds per request, and with hundreds waiting that doubled the bridge's time per step;
even testing each waiting request's first block key against vLLM's cache took 0.09 ms a step
(cache misses after a model step; now 0.05 ms). A hit starts with the request's first full block and vLLM's
lookup stops at the first block not cached; a first block is cached only if a request with the
same first block ran (its key chains from no parent, so only another first block has it). So a
waiting request can hit only if another request of the run has the same first block key, or one
had it before the run (the key is cached when the request arrives), or it ran itself (was
preempted); only those are tested against the cache, and only those found there are looked up
by vLLM. A request without a full block when it arrives gets its first key once its own tokens
fill the block (by running); until then it hits nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
from vllm.v1.core.kv_cache_utils import make_block_hash_with_group_id
from vllm.v1.request import Request

from engine_adapter.plan_batch import PrefixHits
from solvers.compiled import kernel


class PrefixLookup:
    """Prefix-cache hits of the bridge's requests. Lifetime: one run (rows are the run's book rows)."""

    def __init__(self, kv_cache_manager, block_size: int) -> None:
        self.manager = kv_cache_manager
        self.block_size = block_size
        pool = kv_cache_manager.block_pool
        self._usable = pool.num_gpu_blocks - 1  # block 0 is vLLM's null block, never free nor held
        # vLLM's map of cached block keys (a dict in 0.32); anything else: every candidate is looked up
        cached = getattr(getattr(pool, "cached_block_hash_to_block", None), "_cache", None)
        self._cached_keys = cached if isinstance(cached, dict) and pool.hash_block_size == block_size else None
        self._first_key: list = []  # per book row: its first full block's cache key; None: no full block yet
        self._rows_of_key: dict = {}  # first key -> the rows that have it
        # per book row: another request has (or had, before the run) its first key, so it may hit (grown by doubling)
        self._shared = np.zeros(64, dtype=bool)
        self._unkeyed: dict[int, Request] = {}  # rows without a full block, until they have one or finish

    def register(self, row: int, request: Request) -> None:
        """A request just added (book row `row`, the next one)."""
        if row != len(self._first_key):
            raise ValueError(f"PrefixLookup: row {row} registered out of order (expected {len(self._first_key)})")
        if row == len(self._shared):
            self._shared = np.concatenate([self._shared, np.zeros_like(self._shared)])
        self._first_key.append(None)
        self._keyed(row, request)

    def _keyed(self, row: int, request: Request) -> None:
        """Note `row`'s first key if its first block is full, else wait for it (`_unkeyed`)."""
        key = _first_key(request)
        if key is None:
            self._unkeyed[row] = request
            return
        self._first_key[row] = key
        rows = self._rows_of_key.setdefault(key, [])
        rows.append(row)
        if len(rows) > 1 or self._is_cached(key):
            self._shared[rows] = True

    def _is_cached(self, key) -> bool:
        return True if self._cached_keys is None else key in self._cached_keys

    def hits(self, live: list[Request], rows: np.ndarray, n_running: int,
             preemptions: np.ndarray) -> tuple[dict[int, list], np.ndarray]:
        """The waiting live requests' hits now (live[n_running:], book `rows`, the book's
        `preemptions` per row): {live position: hit blocks} for those with a hit, and the hit tokens
        per live position (the view's `cached` column; 0 for the running ones)."""
        for row, request in list(self._unkeyed.items()):
            if request.block_hashes:  # its tokens filled its first block
                del self._unkeyed[row]
                self._keyed(row, request)
            elif request.is_finished():
                del self._unkeyed[row]
        cached = np.zeros(len(live), dtype=np.int64)
        found: dict[int, list] = {}
        waiting = rows[n_running:]
        lookup = self.manager.get_computed_blocks
        for k in may_hit(self._shared, preemptions, waiting).tolist():
            key = self._first_key[waiting[k]]
            if key is None or not self._is_cached(key):
                continue
            blocks = list(lookup(live[n_running + k])[0].blocks[0])
            if blocks:
                found[n_running + k] = blocks
                cached[n_running + k] = len(blocks) * self.block_size
        return found, cached

    def after(self, live: list[Request], n_running: int, found: dict[int, list], cached: np.ndarray,
              kv_blocks: np.ndarray, free: int) -> Callable[[np.ndarray], PrefixHits]:
        """The plan rules' prefix-cache input once the plan's preemptions (live positions) free
        their blocks (plan_batch.PrefixHits), from vLLM's block reference counts. `kv_blocks`: the
        view's blocks held per live position; `free`: vLLM's free blocks now."""
        shared = int(kv_blocks[:n_running].sum()) != self._usable - free  # some block held by several
        blocks_of = self.manager.get_blocks

        def held(k: int) -> list:
            return list(blocks_of(live[k].request_id).blocks[0])

        def after(preempt: np.ndarray) -> PrefixHits:
            if not shared and not found:  # each held block has one holder: preempting frees what it holds
                return PrefixHits(None, None, free + int(kv_blocks[preempt].sum()) if len(preempt) else free, None)
            victims = preempt.tolist()
            hit_held = np.zeros(len(live), dtype=np.int64)
            released = Counter(b.block_id for k in victims for b in held(k))
            ref = {b.block_id: b.ref_cnt - released[b.block_id] for k in victims for b in held(k)}

            def refs(block) -> int:
                return ref.get(block.block_id, block.ref_cnt)

            for k, hit in found.items():
                hit_held[k] = sum(refs(b) > 0 for b in hit)

            def freed() -> np.ndarray:  # the running ones' (the waiting ones hold none)
                out = np.zeros(len(live), dtype=np.int64)
                for k in range(n_running):
                    out[k] = sum(refs(b) == 1 for b in held(k))
                return out

            return PrefixHits(cached if found else None, hit_held if found else None,
                              free + sum(r == 0 for r in ref.values()), freed if shared else None)

        return after


@kernel
def may_hit(shared, preemptions, waiting):
    """The positions of `waiting` (book rows) that may hit: their first key is shared, or they
    were preempted. Compiled: as numpy expressions this line took ~50 us a step under a line
    profiler (cold caches after a model step)."""
    out = np.empty(len(waiting), dtype=np.int64)
    m = 0
    for k in range(len(waiting)):
        row = waiting[k]
        if shared[row] or preemptions[row] > 0:
            out[m] = k
            m += 1
    return out[:m]


def _first_key(request: Request):
    hashes = request.block_hashes
    return make_block_hash_with_group_id(hashes[0], 0) if hashes else None  # (one KV cache group: vllm_checks)

