"""Prefix caching in the simulator: the BlockPool driven by the engine's state changes.

Active when the engine spec has `enable_prefix_caching` and some request carries content ids
(otherwise every block is the request's own and a plain free-block counter is exact, except
that vLLM would let a preempted request hit its own blocks on resume; that is not modelled for
instances without content ids). Then every request goes through the pool.

Per waiting live slot, `lookup` finds its hit now and writes two LiveState rows: `cached` (hit
tokens, what the policy sees and what its prefill skips) and `hit_held` (hit blocks that are not
free: the admission check counts the free ones as taken, as vLLM's allocate_slots does). The plan
rules see a waiting request as holding its hit (plan_columns) when they form the batch. The
iteration then allocates as vLLM does (`allocate`): running requests first, then each waiting
request looked up again at its turn, so a request admitted right after another that computes
the same prefix hits it in the same iteration, as in vLLM.
"""

from __future__ import annotations

import numpy as np

from engine_adapter.plan_rules import Batch
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
        self.spec = spec = instance.engine
        self.state = state
        self.block_size = spec.block_size
        self.pool = BlockPool(spec.kv_blocks, spec.block_size)
        self.keys = ContentKeys(instance.requests, spec.block_size)
        self.hit_tokens = 0  # over all admissions (vLLM's prefix-cache stats: hits / queries)
        self.query_tokens = 0
        self.hits_of = np.zeros(len(instance.requests), dtype=np.int64)  # per request, over its admissions
        self.queries_of = np.zeros(len(instance.requests), dtype=np.int64)

    def lookup(self, slots: np.ndarray) -> None:
        """Refresh the hits of the waiting requests among `slots`."""
        state, pool, bs = self.state, self.pool, self.block_size
        for s in slots[~state.resident[slots]].tolist():
            i = int(state.idx[s])
            hit = pool.hit(self.keys.of(i), int(state.prompt_len[s] + state.generated[s]))
            state.cached[s] = len(hit) * bs
            state.hit_held[s] = len(hit) - pool.blocks_needed(i, hit, 0)

    def plan_columns(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """computed, prefill_left and held blocks with each waiting request's hit counted in."""
        state = self.state
        cached = state.cached[:n]
        return state.computed[:n] + cached, state.prefill_left[:n] - cached, state.kv_blocks[:n] + state.hit_held[:n]

    def allocate(self, batch: Batch, run_slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Allocate the iteration as vLLM's schedule() does; returns the slots that run and their
        chunks (resident ones first, then the admitted ones).

        The batch's resident requests allocate first, in batch order. Then the waiting requests
        of the plan's run, in run order, are admitted one at a time against the cache as it is at
        their turn (earlier allocations may have cached blocks they hit, or evicted ones they
        would have hit): chunk = min(prefill after the hit, budget left), admission check with
        the free blocks left, the first that fails blocks the rest. That is the batch's own
        admission whenever the hits are those looked up for it. None is admitted in an
        iteration whose batch preempted (the plan rules' rule)."""
        state, pool, bs, spec = self.state, self.pool, self.block_size, self.spec
        resident = state.resident[batch.slots]
        slots, chunk = batch.slots[resident], batch.chunk[resident]
        for s, c in zip(slots.tolist(), chunk.tolist(), strict=True):
            i = int(state.idx[s])
            tokens = int(state.computed[s]) + c
            pool.allocate(i, (), tokens, self.keys.of(i), min(tokens, int(state.prompt_len[s] + state.generated[s])))
        if batch.victims:
            return slots, chunk
        budget = spec.token_budget - int(chunk.sum())
        seats = spec.max_seqs - len(slots)
        holders = int(np.count_nonzero(state.resident[: state.n_live]))
        admitted: list[int] = []
        chunks: list[int] = []
        for s in run_slots[~state.resident[run_slots]].tolist():
            if budget == 0 or seats == 0:
                break
            i = int(state.idx[s])
            keys = self.keys.of(i)
            num_tokens = int(state.prompt_len[s] + state.generated[s])
            hit = pool.hit(keys, num_tokens)
            cached = len(hit) * bs
            c = min(num_tokens - cached, budget)
            gate = num_tokens if spec.reserve_full_prompt else cached + c
            watermark = spec.watermark_blocks if holders else 0
            if max(pool.blocks_needed(i, hit, gate) + watermark, pool.blocks_needed(i, hit, cached + c)) > pool.free:
                break
            pool.allocate(i, hit, cached + c, keys, min(cached + c, num_tokens))
            state.computed[s] = cached
            state.prefill_left[s] = num_tokens - cached
            state.cached[s] = state.hit_held[s] = 0
            self.hit_tokens += cached
            self.hits_of[i] += cached
            self.query_tokens += num_tokens
            self.queries_of[i] += num_tokens
            admitted.append(s)
            chunks.append(c)
            budget -= c
            seats -= 1
            holders += 1
        return (np.concatenate((slots, np.array(admitted, dtype=np.int64))),
                np.concatenate((chunk, np.array(chunks, dtype=np.int64))))

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

    def freed(self, n: int) -> np.ndarray:
        """Per live slot (the first n), the blocks preempting its request would return to the
        free queue (0 for one holding none)."""
        state, out = self.state, np.zeros(n, dtype=np.int64)
        for s in np.flatnonzero(state.resident[:n]).tolist():
            out[s] = self.pool.exclusive(int(state.idx[s]))
        return out

    def release(self, slot: int) -> None:
        self.pool.release(int(self.state.idx[slot]))
