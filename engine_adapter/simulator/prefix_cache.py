"""Prefix caching in the simulator: the BlockPool driven by the engine's state changes.

Active when the engine spec has `enable_prefix_caching` and some request carries content ids
(otherwise every block is the request's own and a plain free-block counter is exact, except
that vLLM would let a preempted request hit its own blocks on resume; that is not modelled for
instances without content ids). Then every request goes through the pool.

Per waiting live slot, `lookup` finds its hit now and writes two LiveState rows: `cached` (hit
tokens, what the policy sees and what its prefill skips) and `hit_held` (hit blocks that are not
free: the admission check counts the free ones as taken, as vLLM's allocate_slots does). The plan
rules then see a waiting request as holding its hit (plan_columns). Hits are looked up before the
iteration's batch is formed; vLLM looks each waiting request up at its turn, after the requests
scheduled before it allocated. Two differences follow: a request admitted in the same iteration
as another computing the same uncached prefix hits it here one admission later; and a hit block
evicted by an earlier allocation in the same iteration shortens the hit (here the chunk stays as
planned, vLLM would recompute it from the shorter hit).
"""

from __future__ import annotations

import numpy as np

from engine_adapter.simulator.block_pool import BlockPool
from engine_adapter.simulator.content_keys import ContentKeys
from engine_adapter.simulator.request_state import LiveState
from formulations.instance import Instance
from formulations.requests import ValidationError


def uses_prefix_cache(instance: Instance) -> bool:
    if not instance.engine.enable_prefix_caching or not any(r.content_ids for r in instance.requests):
        return False
    if instance.engine.preemption == "swap":
        raise ValidationError("engine: prefix caching is modelled with preemption='recompute' only; "
                              "set enable_prefix_caching=false or preemption='recompute'")
    return True


class PrefixCache:
    def __init__(self, instance: Instance, state: LiveState) -> None:
        spec = instance.engine
        self.state = state
        self.block_size = spec.block_size
        self.pool = BlockPool(spec.kv_blocks, spec.block_size)
        self.keys = ContentKeys(instance.requests, spec.block_size)
        self._hits: dict[int, list[int]] = {}  # request -> its hit blocks at the last lookup
        self.hit_tokens = 0  # over all admissions (vLLM's prefix-cache stats: hits / queries)
        self.query_tokens = 0

    def lookup(self, slots: np.ndarray) -> None:
        """Refresh the hits of the waiting requests among `slots`."""
        state, pool, bs = self.state, self.pool, self.block_size
        for s in slots[~state.resident[slots]].tolist():
            i = int(state.idx[s])
            hit = pool.hit(self.keys.of(i), int(state.prompt_len[s] + state.generated[s]))
            self._hits[i] = hit
            state.cached[s] = len(hit) * bs
            state.hit_held[s] = len(hit) - pool.blocks_needed(i, hit, 0)

    def plan_columns(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """computed, prefill_left and held blocks with each waiting request's hit counted in."""
        state = self.state
        cached = state.cached[:n]
        return state.computed[:n] + cached, state.prefill_left[:n] - cached, state.kv_blocks[:n] + state.hit_held[:n]

    def allocate(self, slots: np.ndarray, chunk: np.ndarray, newcomer: np.ndarray) -> None:
        """The batch's allocations in vLLM's order (running requests, then the admitted ones, each
        in batch order); an admitted request takes what is left of its hit and skips its prefill."""
        state, pool, bs = self.state, self.pool, self.block_size
        order = np.concatenate((np.flatnonzero(~newcomer), np.flatnonzero(newcomer))).tolist()
        for k in order:
            s = int(slots[k])
            i = int(state.idx[s])
            keys = self.keys.of(i)
            num_tokens = int(state.prompt_len[s] + state.generated[s])
            hit: list[int] = []
            if newcomer[k]:
                planned = self._hits.pop(i, [])
                hit = pool.hit(keys, num_tokens)[: len(planned)]
                cached = len(hit) * bs
                state.computed[s] = cached
                state.prefill_left[s] = num_tokens - cached
                self.hit_tokens += cached
                self.query_tokens += num_tokens
                state.cached[s] = state.hit_held[s] = 0
            tokens = int(state.computed[s]) + int(chunk[k])
            pool.allocate(i, hit, tokens, keys, min(tokens, num_tokens))

    def grow(self, slots: np.ndarray, computed: np.ndarray, steps: int) -> None:
        """A run of `steps` decode iterations: each member takes a new block whenever its next
        token starts one, in iteration order then batch order (vLLM's allocation order)."""
        bs, pool, state = self.block_size, self.pool, self.state
        first = (-computed) % bs  # iteration at which member k first needs a block
        events = sorted((j, k) for k, f in enumerate(first.tolist()) for j in range(f, steps, bs))
        idx = state.idx[slots].tolist()
        comp = computed.tolist()
        for j, k in events:
            pool.allocate(idx[k], (), comp[k] + j + 1, (), 0)
        for k, i in enumerate(idx):
            pool.cache(i, self.keys.of(i), comp[k] + steps)

    def freed(self, slot: int) -> int:
        """Blocks preempting the request at `slot` would return to the free queue."""
        return self.pool.exclusive(int(self.state.idx[slot]))

    def release(self, slot: int) -> None:
        self.pool.release(int(self.state.idx[slot]))
