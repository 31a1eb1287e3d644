"""vLLM v1's KV block pool with automatic prefix caching, down to block identities.

Modelled on vllm/v1/core/block_pool.py and kv_cache_manager.py (0.32.0), full attention only:
- a full block is identified by a key: a chained hash of its content (content_keys.py makes the
  keys; here they are opaque ints). Only full blocks of tokens that exist get a key.
- a request's hit is the longest run of leading blocks whose keys are cached, at most
  (num_tokens - 1) // block_size blocks: the last token is always recomputed (for its logits).
- the free queue holds every block with no owner, cached or not, in eviction order; allocation
  takes blocks from its head and evicts the key of each block it takes. A freed request returns
  its blocks tail first; blocks without a key go to the head (reused first), blocks with a key to
  the tail (least recently used evicted first). A hit on a free block takes it out of the queue.
- several blocks may carry the same key (two requests computed the same content before either
  was cached); a lookup returns the first cached one.
Block identities matter because eviction order decides which cached content survives; the block
ids here are vLLM's minus one (vLLM reserves block 0 as its null block).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from formulations.arithmetic import ceil_div


class BlockPool:
    """KV blocks of one engine: free queue, key -> blocks map, per-request block tables."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.block_size = block_size
        self._free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))  # head: next allocated
        self._ref = [0] * num_blocks
        self._key: list[int | None] = [None] * num_blocks
        self._cached: dict[int, dict[int, None]] = {}  # key -> its blocks, first inserted first
        self.tables: dict[int, list[int]] = {}  # request -> its blocks, in token order
        self._n_keyed: dict[int, int] = {}  # request -> how many leading blocks of its table carry a key

    @property
    def free(self) -> int:
        return len(self._free)

    def held(self, request: int) -> int:
        table = self.tables.get(request)
        return len(table) if table is not None else 0

    def exclusive(self, request: int) -> int:
        """Blocks only this request holds: what releasing it frees."""
        ref = self._ref
        return sum(1 for b in self.tables.get(request, ()) if ref[b] == 1)

    def hit(self, keys: Sequence[int], num_tokens: int) -> list[int]:
        """Blocks of the longest cached prefix of `keys` for a request holding `num_tokens`
        tokens (prompt plus output so far), leaving at least its last token to compute."""
        blocks = []
        cached = self._cached
        for key in keys[: (num_tokens - 1) // self.block_size]:
            found = cached.get(key)
            if not found:
                break
            blocks.append(next(iter(found)))
        return blocks

    def blocks_needed(self, request: int, hit: Sequence[int], tokens: int) -> int:
        """Free blocks an allocation of `tokens` slots takes: new blocks plus the hit blocks that
        now sit in the free queue (a hit removes them from it)."""
        table = self.tables.get(request)
        required = ceil_div(tokens, self.block_size)
        if table is not None:
            return max(required - len(table), 0)
        ref = self._ref
        return max(required - len(hit), 0) + sum(1 for b in hit if ref[b] == 0)

    def allocate(self, request: int, hit: Sequence[int], tokens: int, keys: Sequence[int], cache_tokens: int) -> None:
        """Give `request` slots for `tokens` tokens (first allocation: `hit` blocks first), then
        key its full blocks up to `cache_tokens` tokens. The caller checked blocks_needed."""
        table = self.tables.get(request)
        ref, free = self._ref, self._free
        if table is None:
            table = self.tables[request] = []
            for b in hit:
                if ref[b] == 0:
                    del free[b]
                ref[b] += 1
            table.extend(hit)
            self._n_keyed[request] = len(hit)
        new = ceil_div(tokens, self.block_size) - len(table)
        for _ in range(new):
            b, _none = free.popitem(last=False)
            self._evict(b)
            ref[b] = 1
            table.append(b)
        self._cache(request, table, keys, cache_tokens // self.block_size)

    def cache(self, request: int, keys: Sequence[int], tokens: int) -> None:
        """Key the request's full blocks up to `tokens` tokens (tokens computed since allocation)."""
        self._cache(request, self.tables[request], keys, tokens // self.block_size)

    def release(self, request: int) -> None:
        """The request finished or was preempted: its blocks return to the free queue."""
        table = self.tables.pop(request)
        del self._n_keyed[request]
        ref, free, key = self._ref, self._free, self._key
        first: list[int] = []
        for b in reversed(table):
            ref[b] -= 1
            if ref[b] == 0:
                if key[b] is None:
                    first.append(b)
                else:
                    free[b] = None
        for b in reversed(first):
            free[b] = None
            free.move_to_end(b, last=False)

    def _cache(self, request: int, table: list[int], keys: Sequence[int], full: int) -> None:
        done = self._n_keyed[request]
        if full <= done:
            return
        cached, key_of = self._cached, self._key
        for j in range(done, full):
            b, k = table[j], keys[j]
            key_of[b] = k
            found = cached.get(k)
            if found is None:
                cached[k] = {b: None}
            else:
                found[b] = None
        self._n_keyed[request] = full

    def _evict(self, block: int) -> None:
        k = self._key[block]
        if k is None:
            return
        self._key[block] = None
        found = self._cached[k]
        del found[block]
        if not found:
            del self._cached[k]
