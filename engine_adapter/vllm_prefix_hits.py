"""The bridge's prefix-cache input, read from vLLM's KV cache manager without changing it: each
waiting request's hit now (the view's `cached` column) and the plan rules' `PrefixHits` once the
plan's preemptions are done.

Why not simply ask vLLM for every waiting request's hit each step: vLLM's own lookup costs a few
microseconds per request (a Python call chain and reads of the request object, cache misses after
a model step), and with hundreds waiting that doubled the bridge's time per step. A hit starts
with the request's first full block, whose hash never changes once the block is full (vLLM chains
block hashes from the first block on), and vLLM's lookup stops at the first block not cached. So
the first block's cache key is kept per book row, and only the waiting requests whose first key is
cached now are looked up by vLLM; the others hit nothing. A request without a full block when it
arrived hits nothing until it has run (only then can its tokens grow): after a preemption it is
looked up by vLLM until its first key is known.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
from vllm.v1.core.kv_cache_utils import make_block_hash_with_group_id
from vllm.v1.request import Request

from engine_adapter.plan_batch import PrefixHits


class PrefixLookup:
    """Prefix-cache hits of the bridge's requests. Lifetime: one run (rows are the run's book rows)."""

    def __init__(self, kv_cache_manager, block_size: int) -> None:
        self.manager = kv_cache_manager
        self.block_size = block_size
        pool = kv_cache_manager.block_pool
        self._usable = pool.num_gpu_blocks - 1  # block 0 is vLLM's null block, never free nor held
        # vLLM's map of cached block keys (a dict in 0.32); anything else: every waiting request is looked up
        cached = getattr(getattr(pool, "cached_block_hash_to_block", None), "_cache", None)
        self._cached_keys = cached if isinstance(cached, dict) and pool.hash_block_size == block_size else None
        self._first_key: list = []  # per book row: its first full block's cache key; None: no full block yet
        self._keyless = np.zeros(64, dtype=bool)  # per book row: its first key is None (grown by doubling)

    def register(self, row: int, request: Request) -> None:
        """A request just added (book row `row`, the next one)."""
        if row != len(self._first_key):
            raise ValueError(f"PrefixLookup: row {row} registered out of order (expected {len(self._first_key)})")
        key = _first_key(request)
        self._first_key.append(key)
        if row == len(self._keyless):
            self._keyless = np.concatenate([self._keyless, np.zeros_like(self._keyless)])
        self._keyless[row] = key is None

    def hits(self, live: list[Request], rows: np.ndarray, n_running: int,
             preemptions: np.ndarray) -> tuple[dict[int, list], np.ndarray]:
        """The waiting live requests' hits now (live[n_running:], book `rows`, the book's
        `preemptions` per row): {live position: hit blocks} for those with a hit, and the hit tokens
        per live position (the view's `cached` column; 0 for the running ones)."""
        n = len(live)
        cached = np.zeros(n, dtype=np.int64)
        found: dict[int, list] = {}
        waiting = rows[n_running:]
        if self._cached_keys is None:
            maybe = np.ones(len(waiting), dtype=bool)
        else:
            keys = map(self._first_key.__getitem__, waiting.tolist())
            maybe = np.fromiter(map(self._cached_keys.__contains__, keys), dtype=bool, count=len(waiting))
            # ran, were preempted, and had no full block then: asked until they have one
            maybe |= self._keyless[waiting] & (preemptions[waiting] > 0)
        lookup = self.manager.get_computed_blocks
        for k in (np.flatnonzero(maybe) + n_running).tolist():
            request = live[k]
            blocks = list(lookup(request)[0].blocks[0])
            row = int(rows[k])
            if self._keyless[row]:
                self._first_key[row] = key = _first_key(request)
                self._keyless[row] = key is None
            if blocks:
                found[k] = blocks
                cached[k] = len(blocks) * self.block_size
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


def _first_key(request: Request):
    hashes = request.block_hashes
    return make_block_hash_with_group_id(hashes[0], 0) if hashes else None  # (one KV cache group: vllm_checks)

