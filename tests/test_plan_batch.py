"""The plan -> batch rules (engine_adapter/plan_rules.py): hand-worked cases through the bridge's
entry point, and a randomized check that the simulator's entry point (live slots) and the
bridge's (view columns, admission times) hand the rules the same state."""

from __future__ import annotations

import numpy as np
import pytest

from engine_adapter.plan_batch import PrefixHits, decide_batch
from engine_adapter.simulator.batch import form_batch
from engine_adapter.simulator.request_state import LiveState
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import load_profile
from formulations.online import EngineView, Plan, PlanError
from formulations.requests import Request, RequestClass

LAT = load_profile("llama3-8b-h100").latency


def spec(kv_blocks=10, budget=100, max_seqs=8, block_size=16) -> EngineSpec:
    return EngineSpec(kv_blocks=kv_blocks, latency=LAT, block_size=block_size, token_budget=budget, max_seqs=max_seqs)


def view(engine, *, resident, computed, prefill_left, free, generated=None) -> EngineView:
    n = len(resident)
    resident = np.array(resident, dtype=bool)
    computed = np.array(computed, dtype=np.int64)
    z = np.zeros(n)
    return EngineView(
        now=0.0, idx=np.arange(n, dtype=np.int64), cls=np.ones(n, dtype=np.int8), arrival=z, release=z,
        prompt_len=np.full(n, 50), generated=np.zeros(n, dtype=np.int64) if generated is None else np.array(generated),
        computed=computed, prefill_left=np.array(prefill_left, dtype=np.int64), resident=resident,
        kv_blocks=np.where(resident, -(-computed // engine.block_size), 0), ttft_target=z, read_rate=z, lag=z,
        delay_area=z, deadline=z + 10, group=np.full(n, -1), preemptions=np.zeros(n, dtype=np.int64),
        pred_quantiles=np.ones((n, 1)), quantile_levels=(0.5,), free_blocks=free, engine=engine,
    )


def pairs(decision) -> list[tuple[int, int]]:
    """(position, tokens) of each request the decision runs, in run order."""
    return list(zip(decision.run.tolist(), decision.tokens.tolist(), strict=True))


def test_chunked_prefill_takes_what_the_budget_leaves():
    v = view(spec(budget=100), resident=[True, False, False], computed=[40, 0, 0], prefill_left=[0, 70, 70], free=10)
    d = decide_batch(v, Plan(run=np.array([0, 1, 2])), np.zeros(3))
    assert pairs(d) == [(0, 1), (1, 70), (2, 29)] and d.preempt == []


def test_waiting_request_that_does_not_fit_blocks_later_waiting_ones_only():
    # free 2 blocks of 16: request 1 (40 tokens -> 3 blocks) does not fit; 2 (16 tokens) would, but
    # head-of-line blocking keeps it out; resident 3 still decodes (33 -> 34 tokens: a 3rd block).
    v = view(spec(), resident=[False, False, False, True], computed=[0, 0, 0, 33],
             prefill_left=[16, 40, 16, 0], free=2, generated=[0, 0, 0, 5])
    d = decide_batch(v, Plan(run=np.array([0, 1, 2, 3])), np.zeros(4))
    assert pairs(d) == [(0, 16), (3, 1)] and d.blocked == 1


def test_resident_short_of_kv_evicts_idle_then_lowest_priority_then_itself():
    # every resident holds exactly full blocks, so each decode step needs one new block; free 0
    v = view(spec(), resident=[True] * 4, computed=[32, 32, 32, 32], prefill_left=[0] * 4, free=0,
             generated=[1] * 4)
    admitted = np.array([1.0, 2.0, 3.0, 4.0])
    # 3 is absent from the plan: evicted first (its 2 blocks serve 0 and 1); 2 then finds no
    # resident below it in the plan and is evicted itself
    d = decide_batch(v, Plan(run=np.array([0, 1, 2])), admitted)
    assert pairs(d) == [(0, 1), (1, 1)] and d.preempt == [3, 2]
    # all in the plan: the lowest priority (3) is the victim first, then 2 evicts itself
    d = decide_batch(v, Plan(run=np.array([0, 1, 2, 3])), admitted)
    assert d.preempt == [3, 2] and pairs(d) == [(0, 1), (1, 1)]
    lone = view(spec(), resident=[True], computed=[32], prefill_left=[0], free=0, generated=[1])
    assert decide_batch(lone, Plan(run=np.array([0])), np.zeros(1)).preempt == [0]


def test_bad_plans_raise():
    v = view(spec(), resident=[True, False], computed=[20, 0], prefill_left=[0, 10], free=5, generated=[1, 0])
    with pytest.raises(PlanError, match="not live"):
        decide_batch(v, Plan(run=np.array([5])), np.zeros(2))
    with pytest.raises(PlanError, match="holds no KV"):
        decide_batch(v, Plan(run=np.array([0]), preempt=np.array([1])), np.zeros(2))
    with pytest.raises(PlanError, match="twice"):
        decide_batch(v, Plan(run=np.array([1, 1])), np.zeros(2))
    with pytest.raises(PlanError, match="both"):
        decide_batch(v, Plan(run=np.array([0]), preempt=np.array([0])), np.zeros(2))


def _random_case(rng, n, engine):
    prompt = rng.integers(1, 120, n)
    generated = rng.integers(0, 40, n)
    resident = rng.random(n) < 0.6
    total = prompt + generated  # tokens to (re)compute from scratch
    computed = np.where(resident, rng.integers(1, total + 1), 0)
    decoding = resident & (generated > 0) & (computed == total)
    computed = np.where(decoding, total - 1, computed)
    prefill_left = np.where(decoding, 0, total - computed)
    resident &= computed > 0
    blocks = np.where(resident, -(-computed // engine.block_size), 0)
    return prompt, generated, resident, computed, prefill_left, blocks


def test_matches_the_simulators_batch_former_on_random_states():
    rng = np.random.default_rng(0)
    checked_victims = 0
    for _ in range(300):
        n = int(rng.integers(1, 12))
        engine = spec(kv_blocks=60, budget=int(rng.integers(1, 200)), max_seqs=int(rng.integers(1, 8)))
        prompt, generated, resident, computed, prefill_left, blocks = _random_case(rng, n, engine)
        free = int(rng.integers(0, 8))
        run = rng.permutation(n)[: int(rng.integers(0, n + 1))]
        admitted = rng.permutation(n).astype(float)

        reqs = tuple(Request(id=f"r{i}", cls=RequestClass.THROUGHPUT, arrival=0.0, prompt_len=int(prompt[i]),
                             output_len=int(generated[i]) + 2, slack_ratio=2.0) for i in range(n))
        state = LiveState(Instance(engine, reqs), np.ones((n, 1)))
        state.n_live = n
        state.idx[:n] = np.arange(n)
        state.resident[:n] = resident
        state.computed[:n] = computed
        state.prefill_left[:n] = prefill_left
        state.kv_blocks[:n] = blocks
        state.admit_seq[:n] = admitted
        theirs = form_batch(state, run.astype(np.int64), free, engine, exact_kv=True)

        v = view(engine, resident=resident, computed=computed, prefill_left=prefill_left, free=free,
                 generated=generated)
        mine = decide_batch(v, Plan(run=run), admitted)
        assert pairs(mine) == list(zip(theirs.slots.tolist(), theirs.chunk.tolist(), strict=True))
        assert mine.preempt == list(theirs.victims)
        checked_victims += bool(mine.preempt)
    assert checked_victims > 20  # the KV-shortage path was exercised


def test_full_prompt_gate_holds_back_a_request_whose_first_chunk_fits():
    # free 3 blocks of 16; the waiting request's 100-token prompt needs 7 blocks, its first chunk
    # (budget 40 after the resident's decode: 39 tokens) only 3
    gated = spec(budget=40)
    v = view(gated, resident=[True, False], computed=[20, 0], prefill_left=[0, 100], free=3, generated=[1, 0])
    d = decide_batch(v, Plan(run=np.array([0, 1])), np.zeros(2))
    assert pairs(d) == [(0, 1)] and d.blocked == 1
    ungated = gated.with_(reserve_full_prompt=False)
    v = view(ungated, resident=[True, False], computed=[20, 0], prefill_left=[0, 100], free=3, generated=[1, 0])
    assert pairs(decide_batch(v, Plan(run=np.array([0, 1])), np.zeros(2))) == [(0, 1), (1, 39)]


def test_watermark_applies_only_while_a_request_holds_kv():
    # kv_blocks 9 -> vLLM's pool of 10 -> watermark 0.2 keeps 2 blocks free
    wm = spec(kv_blocks=9).with_(watermark=0.2)
    assert wm.watermark_blocks == 2
    busy = view(wm, resident=[True, False], computed=[16, 0], prefill_left=[0, 48], free=4, generated=[1, 0])
    d = decide_batch(busy, Plan(run=np.array([0, 1])), np.zeros(2))
    assert pairs(d) == [(0, 1)] and d.blocked == 1  # 3 blocks + 2 of watermark > 4 free (after its decode: 3)
    idle = view(wm, resident=[False], computed=[0], prefill_left=[48], free=3)
    assert pairs(decide_batch(idle, Plan(run=np.array([0])), np.zeros(1))) == [(0, 48)]


def test_no_admission_in_an_iteration_that_preempted():
    # resident 0 needs a block, none free: resident 1 (lower priority) is evicted; its 2 blocks
    # would admit waiting request 2 (1 block), but vLLM admits nothing in a step that preempted
    v = view(spec(), resident=[True, True, False], computed=[32, 32, 0], prefill_left=[0, 0, 10], free=0,
             generated=[1, 1, 0])
    d = decide_batch(v, Plan(run=np.array([0, 1, 2])), np.array([1.0, 2.0, 0.0]))
    assert d.preempt == [1] and pairs(d) == [(0, 1)]


def test_prefix_hits_held_by_a_sharer_let_a_waiting_request_in_and_preemption_frees_only_its_own():
    # block size 16, free 2. Waiting request 1 (48 tokens) hits 2 blocks that resident 0 holds:
    # only its 3rd block takes a free one, and its prefill is the 16 tokens after the hit.
    engine = spec(block_size=16)
    v = view(engine, resident=[True, False], computed=[40, 0], prefill_left=[0, 48], free=2, generated=[1, 0])
    calls = []

    def hits(preempt: np.ndarray) -> PrefixHits:
        calls.append(preempt.tolist())
        return PrefixHits(cached=np.array([0, 32]), hit_held=np.array([0, 2]), free_blocks=2, freed=lambda: np.ones(2, dtype=np.int64))

    d = decide_batch(v, Plan(run=np.array([1, 0])), np.zeros(2), hits)
    assert pairs(d) == [(1, 16), (0, 1)] and d.admit_from == [1] and calls == [[]]
    # the same request without the hit needs 3 free blocks: blocked
    assert pairs(decide_batch(v, Plan(run=np.array([1, 0])), np.zeros(2))) == [(0, 1)]
    # the plan preempts 0: hits are asked after it (its blocks are free now, still cached) and the
    # free count is the one given, not the blocks 0 held
    def after(preempt: np.ndarray) -> PrefixHits:
        assert preempt.tolist() == [0]
        return PrefixHits(cached=np.array([0, 32]), hit_held=np.array([0, 0]), free_blocks=3, freed=lambda: np.zeros(2, dtype=np.int64))

    d = decide_batch(v, Plan(run=np.array([1]), preempt=np.array([0])), np.zeros(2), after)
    assert d.preempt == [0] and pairs(d) == [(1, 16)]
    # were its 3 blocks all shared (none freed), the hit's free count rules: nothing fits
    def shared(preempt: np.ndarray) -> PrefixHits:
        return PrefixHits(cached=np.array([0, 32]), hit_held=np.array([0, 0]), free_blocks=0, freed=lambda: np.zeros(2, dtype=np.int64))

    d = decide_batch(v, Plan(run=np.array([1]), preempt=np.array([0])), np.zeros(2), shared)
    assert d.preempt == [0] and pairs(d) == [] and d.blocked == 1
