"""The simulator's BlockPool against vLLM's own KVCacheManager/BlockPool, built directly (no model).

Random runs of requests sharing prefixes (a few prompt families, random tails, outputs that
depend only on the tokens so far, as greedy decoding does) are admitted in chunks (with and
without the full-prompt gate), stepped, finished and preempted in random order on both; after
every operation the hit tokens, the success of each allocation, the free-block count and every
request's block table (vLLM's block ids are ours plus one: its block 0 is the null block) must be
identical. Skipped only when vLLM is missing outside CI.
"""

from __future__ import annotations

import random

import pytest

from vllm_required import require_vllm  # noqa: E402

require_vllm()

import torch  # noqa: E402
from vllm.sampling_params import SamplingParams  # noqa: E402
from vllm.utils.hashing import sha256  # noqa: E402
from vllm.v1.core.kv_cache_manager import KVCacheManager  # noqa: E402
from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash  # noqa: E402
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec  # noqa: E402
from vllm.v1.request import Request, RequestStatus  # noqa: E402

from engine_adapter.simulator.block_pool import BlockPool  # noqa: E402

BS = 4
VOCAB = 50


class Keys:
    """Chained block keys from token content, interned to ints (what content_keys does from ids)."""

    def __init__(self) -> None:
        self.table: dict[tuple, int] = {}

    def of(self, tokens: list[int]) -> list[int]:
        keys, prev = [], -1
        for j in range(len(tokens) // BS):
            prev = self.table.setdefault((prev, tuple(tokens[j * BS:(j + 1) * BS])), len(self.table))
            keys.append(prev)
        return keys


def vllm_manager(num_blocks: int) -> KVCacheManager:
    spec = FullAttentionSpec(block_size=BS, num_kv_heads=1, head_size=1, dtype=torch.float32)
    config = KVCacheConfig(num_blocks=num_blocks + 1, kv_cache_tensors=[],
                           kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)])
    return KVCacheManager(config, max_model_len=256, scheduler_block_size=BS, hash_block_size=BS,
                          enable_caching=True)


class Run:
    """One random run on both pools, checked after every operation."""

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        num_blocks = rng.randint(8, 30)
        self.vllm = vllm_manager(num_blocks)
        self.pool = BlockPool(num_blocks, BS)
        self.keys = Keys()
        hasher = get_request_block_hasher(BS, sha256)
        families = [[rng.randrange(VOCAB) for _ in range(rng.randint(0, 6 * BS))] for _ in range(3)]
        self.requests: list[Request] = []
        self.max_out: list[int] = []
        for i in range(rng.randint(4, 12)):
            prompt = rng.choice(families) + [rng.randrange(VOCAB) for _ in range(rng.randint(1, 2 * BS))]
            if rng.random() < 0.2:  # block-aligned identical prompts: whole-prompt hits, last block recomputed
                prompt = rng.choice(families)[: BS * 2] or [1] * BS
            self.requests.append(Request(str(i), prompt, SamplingParams(max_tokens=64), None, block_hasher=hasher))
            self.max_out.append(rng.randint(1, 3 * BS))
        self.running: set[int] = set()
        self.done: set[int] = set()
        self.hit_tokens: list[int] = []
        self.evictions = 0  # allocations that evicted cached content

    def check(self, cached_before: int) -> None:
        self.evictions += len(self.vllm.block_pool.cached_block_hash_to_block) < cached_before
        assert self.pool.free == self.vllm.block_pool.get_num_free_blocks()
        for i in self.running:
            ours = [b + 1 for b in self.pool.tables[i]]
            assert ours == list(self.vllm.get_block_ids(str(i))[0]), f"request {i} block table"

    def admit(self, i: int, must_fit: bool) -> None:
        req = self.requests[i]
        blocks, hit_tokens, _ = self.vllm.get_computed_blocks(req)
        keys = self.keys.of(req.all_token_ids)
        hit = self.pool.hit(keys, req.num_tokens)
        assert len(hit) * BS == hit_tokens, f"request {i} hit tokens"
        self.hit_tokens.append(hit_tokens)
        chunk = min(req.num_tokens - hit_tokens, self.rng.randint(1, 4 * BS))
        got = self.vllm.allocate_slots(req, chunk, hit_tokens, blocks, full_sequence_must_fit=must_fit)
        fits = (not must_fit or self.pool.blocks_needed(i, hit, req.num_tokens) <= self.pool.free) and \
            self.pool.blocks_needed(i, hit, hit_tokens + chunk) <= self.pool.free
        assert (got is not None) == fits, f"request {i} admission"
        if fits:
            self.pool.allocate(i, hit, hit_tokens + chunk, keys, min(hit_tokens + chunk, req.num_tokens))
            req.status = RequestStatus.RUNNING
            req.num_computed_tokens = hit_tokens
            self.running.add(i)
            self.computed(i, chunk)

    def step(self, i: int) -> None:
        req = self.requests[i]
        chunk = min(req.num_tokens - req.num_computed_tokens, self.rng.randint(1, 4 * BS))
        got = self.vllm.allocate_slots(req, chunk)
        tokens = req.num_computed_tokens + chunk
        fits = self.pool.blocks_needed(i, (), tokens) <= self.pool.free
        assert (got is not None) == fits, f"request {i} step"
        if fits:
            self.pool.allocate(i, (), tokens, self.keys.of(req.all_token_ids), min(tokens, req.num_tokens))
            self.computed(i, chunk)

    def computed(self, i: int, chunk: int) -> None:
        """The chunk ran; a request that computed all its tokens samples one (greedy: a function
        of the tokens so far) and finishes at its output length."""
        req = self.requests[i]
        req.num_computed_tokens += chunk
        if req.num_computed_tokens == req.num_tokens:
            req.append_output_token_ids(hash(tuple(req.all_token_ids)) % VOCAB)
            if req.num_output_tokens == self.max_out[i]:
                self.release(i)
                self.done.add(i)

    def release(self, i: int) -> None:
        self.vllm.free(self.requests[i])
        self.pool.release(i)
        self.running.discard(i)

    def preempt(self, i: int) -> None:
        self.release(i)
        req = self.requests[i]
        req.status = RequestStatus.PREEMPTED
        req.num_computed_tokens = 0

    def play(self, ops: int) -> None:
        rng = self.rng
        for _ in range(ops):
            waiting = [i for i in range(len(self.requests)) if i not in self.running and i not in self.done]
            running = sorted(self.running)
            roll = rng.random()
            cached = len(self.vllm.block_pool.cached_block_hash_to_block)
            if waiting and (roll < 0.35 or not running):
                self.admit(rng.choice(waiting), must_fit=rng.random() < 0.5)
            elif running and roll < 0.9:
                self.step(rng.choice(running))
            elif running:
                self.preempt(rng.choice(running))
            else:
                break
            self.check(cached)


@pytest.fixture(scope="module", autouse=True)
def hashing() -> None:
    init_none_hash(sha256)


def test_block_pool_matches_vllm() -> None:
    hits, evictions = [], 0
    for seed in range(40):
        run = Run(seed)
        run.play(250)
        assert run.done, f"seed {seed}: the run finished no request"
        hits += run.hit_tokens
        evictions += run.evictions
    # the runs reach the cases that matter: hits (whole and partial), misses, evictions
    assert sum(h > 0 for h in hits) > 40 and sum(h == 0 for h in hits) > 40
    assert evictions > 20
