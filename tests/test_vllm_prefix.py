"""Prefix caching on a real tiny vLLM engine on CPU in slotted mode: vLLM's own default scheduler
(prefix caching on, full-prompt gate on) against the simulator's `fcfs`, and the bridge
(SloScheduler) running each policy against the simulator running the same policy.

The workload shares content the way chat does: a system prompt common to every first turn, and
second turns that repeat their first turn (prompt and the answer vLLM actually generated) plus a
new message; KV is tight enough for preemptions and chunked prefill. Identical: every step's
requests and token count, the completion order, each request's preemptions and prefix-cache hit
tokens. Skipped only when vLLM is missing outside CI.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from vllm_required import require_vllm  # noqa: E402

require_vllm()

from test_vllm_default import bridged_steps, finish_order, preemption_counts  # noqa: E402

from engine_adapter.bridge_config import BridgeConfig  # noqa: E402
from engine_adapter.realized import realize  # noqa: E402
from engine_adapter.simulator import simulate  # noqa: E402
from engine_adapter.vllm_runner import VllmEngine, VllmSettings, recorded_hits, replay, run_own_scheduler  # noqa: E402
from formulations.engine_spec import EngineSpec  # noqa: E402
from formulations.instance import Instance  # noqa: E402
from formulations.latency_model import LatencyModel  # noqa: E402
from formulations.requests import Request, RequestClass  # noqa: E402
from solvers.policies.registry import POLICIES, make_policy  # noqa: E402

TAU = 0.01
BS = 32
SETTINGS = VllmSettings(kv_blocks=9, block_size=BS, max_num_seqs=4, max_num_batched_tokens=96, max_model_len=288,
                        enable_prefix_caching=True)


@pytest.fixture(scope="module")
def engine() -> VllmEngine:
    return VllmEngine(SETTINGS)


@pytest.fixture(scope="module")
def bridged() -> VllmEngine:
    return VllmEngine(SETTINGS, BridgeConfig(policy="fcfs", slot_time=TAU))


def spec() -> EngineSpec:
    return EngineSpec(kv_blocks=SETTINGS.kv_blocks, latency=LatencyModel(c0=TAU, c_prefill=0.0, c_decode=0.0, c_ctx=0.0),
                      block_size=BS, token_budget=SETTINGS.max_num_batched_tokens, max_seqs=SETTINGS.max_num_seqs,
                      slot_time=TAU, reserve_full_prompt=True, enable_prefix_caching=True)


def relaxed(j: int) -> tuple[RequestClass, dict]:
    return RequestClass.THROUGHPUT, dict(slack_ratio=50.0)


def mixed(j: int) -> tuple[RequestClass, dict]:
    """Every other conversation is interactive: SLO-aware policies reorder, reject and preempt."""
    if j % 2 == 0:
        return RequestClass.LATENCY, dict(ttft_target=0.3, read_rate=20.0)
    return RequestClass.THROUGHPUT, dict(slack_ratio=4.0)


def conversations(seed: int, n: int, second_turn_at: float, slo=relaxed) -> Instance:
    """n first turns (a shared 2-block system prompt, an own question) arriving over the first
    slots, and their second turns at `second_turn_at` (after every first turn finished);
    `slo(j)`: conversation j's class and SLO."""
    rng = random.Random(seed)
    own = iter(range(100, 10**6))
    requests = []
    for j in range(n):
        prompt = 2 * BS + rng.randint(5, 70)
        out = rng.randint(8, 45)
        ids = (1, 2) + tuple(next(own) for _ in range(-(-(prompt + out) // BS) - 2))
        cls, targets = slo(j)
        requests.append(Request(id=f"t1-{j}", cls=cls, arrival=round(rng.randint(0, 6) * TAU, 6),
                                prompt_len=prompt, output_len=out, content_ids=ids, content_block=BS, **targets))
    for j, first in enumerate(list(requests)):
        before = first.prompt_len + first.output_len
        prompt = before + rng.randint(5, 40)
        out = rng.randint(5, 20)
        ids = first.content_ids[: before // BS] + tuple(next(own) for _ in range(-(-(prompt + out) // BS) - before // BS))
        cls, targets = slo(j)
        requests.append(Request(id=f"t2-{j}", cls=cls, arrival=second_turn_at + j * TAU,
                                prompt_len=prompt, output_len=out, content_ids=ids, content_block=BS, **targets))
    return Instance(spec(), tuple(requests))


def simulated_steps(instance: Instance, sim) -> list[tuple[int, list[str], int]]:
    """(slot, request ids, tokens) of every iteration the simulator ran tokens in (its iteration
    log: the batch as allocated, after each admitted request's hit). An iteration whose planned
    admission failed at allocation (a hit evicted by an allocation before it) runs nothing but
    takes its slot, as vLLM's empty step does; the bridge records only steps with tokens."""
    log = sim.meta["iteration_log"]
    ids = [r.id for r in instance.requests]
    return [(round(start / TAU), sorted(ids[i] for i in idx.tolist()), int(tokens))
            for start, idx, tokens in zip(log["start"], log["scheduled"], log["tokens"], strict=True) if tokens]


def own_scheduler_matches_fcfs(engine: VllmEngine, instance: Instance, sim):
    """vLLM's own scheduler on `instance` against the simulator's fcfs schedule `sim`: the same
    steps, completion order, preemptions and hit tokens per request; returns vLLM's run."""
    ref = run_own_scheduler(engine, instance, TAU)
    assert [(slot, sorted(per), sum(per.values())) for slot, per in ref.steps] == simulated_steps(instance, sim)
    done = sorted(sim.timelines, key=lambda t: (t.finish, t.request_id))
    assert ref.finish_order == [t.request_id for t in done]
    assert ref.preemptions == {t.request_id: len(t.preemptions) for t in sim.timelines}
    assert ref.hits_of == sim.meta["prefix_cache"]["hits_of"]
    return ref


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vllm_default_scheduler_matches_simulator_fcfs_with_shared_prefixes(engine, seed) -> None:
    instance = conversations(seed, n=6, second_turn_at=3.0)
    sim = simulate(instance, make_policy("fcfs"), record_iterations=True)
    first_done = max(t.finish for t in sim.timelines if t.request_id.startswith("t1"))
    assert first_done < 3.0, "second turns must arrive after every first turn finished"
    ref = own_scheduler_matches_fcfs(engine, instance, sim)
    # the workload exercises what it is for: hits on the system prompt and on whole first turns
    assert sum(ref.hits_of.values()) > 6 * 2 * BS
    assert sum(len(t.preemptions) for t in sim.timelines) > 0


@pytest.mark.parametrize("slo", [relaxed, mixed])
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_bridge_matches_simulator_per_policy_with_shared_prefixes(bridged, policy, slo) -> None:
    """The bridge builds each step's view and batch from vLLM's own prefix-cache lookups and
    block reference counts; the simulator from its BlockPool. Same steps, completion order,
    preemptions and hit tokens per request. Both ask the policy at the same events
    (engine_adapter/events.py), so the simulator runs as by default (fast-forwarding)."""
    instance = realize(conversations(0, n=6, second_turn_at=3.0, slo=slo), bridged.spec)
    assert instance.engine.enable_prefix_caching and instance.engine.reserve_full_prompt
    with recorded_hits(bridged.scheduler) as hits:
        mine, schedule = bridged_steps(bridged, instance, policy)
    sim_schedule = simulate(instance, make_policy(policy), record_iterations=True)
    assert [(slot, sorted(per), sum(per.values())) for slot, per in mine] == simulated_steps(instance, sim_schedule)
    assert finish_order(schedule) == finish_order(sim_schedule)
    assert preemption_counts(schedule) == preemption_counts(sim_schedule)
    assert {r.id: hits.get(r.id, 0) for r in instance.requests} == sim_schedule.meta["prefix_cache"]["hits_of"]
    assert sum(hits.values()) > 6 * 2 * BS, "second turns and the system prompt must hit"


def with_short_prompts(instance: Instance, seed: int) -> Instance:
    """`instance` plus requests whose prompt fills no block (random tokens, no shared content)
    and whose output fills several: after a preemption they hit their own blocks."""
    rng = random.Random(seed)
    short = [Request(id=f"s{j}", cls=RequestClass.THROUGHPUT, arrival=round(rng.randint(0, 8) * TAU, 6),
                     prompt_len=rng.randint(5, BS - 2), output_len=rng.randint(2 * BS, 3 * BS), slack_ratio=50.0)
             for j in range(5)]
    return Instance(instance.engine, instance.requests + tuple(short))


def brute_force_hits(manager, live: list, n_running: int, preempt: list[int]) -> tuple[list[int], int, list[int]]:
    """From vLLM's blocks one by one: per live position the hit blocks held by a request once
    `preempt` gave theirs back (waiting ones), the free blocks then, and per running position the
    blocks its own preemption would then free."""
    held = {k: list(manager.get_blocks(r.request_id).blocks[0]) for k, r in enumerate(live[:n_running])}
    released = Counter(b.block_id for k in preempt for b in held[k])
    ref = {b.block_id: b.ref_cnt - released[b.block_id] for blocks in held.values() for b in blocks}
    hit_held = [0] * n_running + [sum(ref.get(b.block_id, b.ref_cnt) > 0 for b in manager.get_computed_blocks(r)[0].blocks[0])
                                  for r in live[n_running:]]
    gone = {b.block_id for k in preempt for b in held[k] if ref[b.block_id] == 0}
    freed = [sum(ref[b.block_id] == 1 for b in held[k]) for k in range(n_running)]
    return hit_held, manager.block_pool.get_num_free_blocks() + len(gone), freed


@pytest.fixture
def checked_lookup(monkeypatch) -> Counter:
    """PrefixLookup checked at every call: its hits equal vLLM's lookup of every waiting request,
    and its PrefixHits (without a preemption, and with the first running request preempted)
    equal a count over vLLM's blocks. Returns what the checks saw (steps, hits, request ids hit)."""
    from engine_adapter.vllm_prefix_hits import PrefixLookup

    seen = Counter()
    hits, after = PrefixLookup.hits, PrefixLookup.after

    def checked_hits(self, live, rows, n_running, preemptions):
        found, cached = hits(self, live, rows, n_running, preemptions)
        lookup = self.manager.get_computed_blocks
        assert cached.tolist() == [0] * n_running + [len(lookup(r)[0].blocks[0]) * BS for r in live[n_running:]]
        seen["steps"] += 1
        seen.update(f"hit {live[k].request_id}" for k in found)  # (vLLM appends a suffix to the id)
        return found, cached

    def checked_after(self, live, n_running, found, cached, kv_blocks, free):
        rule = after(self, live, n_running, found, cached, kv_blocks, free)
        for preempt in ([], [0])[: 1 + (n_running > 0)]:
            got = rule(np.array(preempt, dtype=np.int64))
            hit_held, free_then, freed = brute_force_hits(self.manager, live, n_running, preempt)
            assert (got.hit_held.tolist() if got.hit_held is not None else [0] * len(live)) == hit_held
            assert got.free_blocks == free_then
            mine = got.freed() if got.freed is not None else kv_blocks  # (a preempted one's own: unused)
            assert [mine[k] for k in range(n_running) if k not in preempt] == \
                [freed[k] for k in range(n_running) if k not in preempt]
            seen["shared" if got.freed is not None else "unshared"] += 1
        return rule

    monkeypatch.setattr(PrefixLookup, "hits", checked_hits)
    monkeypatch.setattr(PrefixLookup, "after", checked_after)
    return seen


def test_bridge_prefix_lookup_equals_vllm_lookup_every_step(bridged, checked_lookup) -> None:
    """The bridge asks vLLM's lookup only for waiting requests that can hit and takes a shortcut
    when no block has two holders (engine_adapter/vllm_prefix_hits.py). A run with shared prefixes,
    preemptions and short prompts resumed after one: checked at every step (`checked_lookup`)."""
    instance = realize(with_short_prompts(conversations(1, n=6, second_turn_at=3.0), 1), bridged.spec)
    bridged.configure(BridgeConfig(policy="fcfs", slot_time=TAU))
    run = replay(bridged, instance)
    assert run.schedule.meta["plan_deviations"] == 0
    assert all(t.finish is not None for t in run.schedule.timelines)
    seen = checked_lookup
    assert seen["steps"] > 50 and seen["shared"] > 0 and seen["unshared"] > 0
    assert any(k.startswith("hit t2-") for k in seen), "second turns hit their first turns"
    assert any(k.startswith("hit s") for k in seen), "a short prompt resumed after a preemption hits its own blocks"


def test_bridge_prefix_lookup_finds_a_first_block_filled_by_generated_tokens(bridged, checked_lookup) -> None:
    """A request whose prompt fills no block gets its first block from its own output; a request
    waiting meanwhile whose prompt starts with those tokens hits that block once it is cached,
    though it arrived before the block existed. vLLM's model is deterministic (greedy), so the
    output is learned in a first run and the waiting request's prompt built from it."""
    prompt = list(range(3, 13))  # 10 tokens: no full block
    bridged.configure(BridgeConfig(policy="fcfs", slot_time=TAU))
    bridged.submit("probe", len(prompt), 40, tokens=prompt)
    bridged.drain()
    first_block = prompt + bridged.outputs.pop("probe")[: BS - len(prompt)]
    assert bridged.llm.reset_prefix_cache()
    bridged.configure(BridgeConfig(policy="fcfs", slot_time=TAU))
    bridged.submit("short", len(prompt), 40, tokens=prompt)
    for j in range(3):  # the other seats (max_num_seqs=4), busy past the short one's first block
        bridged.submit(f"filler-{j}", 33, 40, tokens=[500 + 40 * j + t for t in range(33)])
    bridged.submit("late", BS + 20, 8, tokens=first_block + list(range(900, 920)))  # waits for a seat
    bridged.drain()
    assert bridged.outputs["short"][: BS - len(prompt)] == first_block[len(prompt):]
    assert any(k.startswith("hit late") for k in checked_lookup), "the late request waits with a hit"


def test_bridge_prefix_lookup_finds_blocks_cached_before_the_run(bridged, checked_lookup) -> None:
    """Blocks cached by an earlier run (the scheduler reconfigured, vLLM's cache kept) are hit by
    a request of the new run with the same first block, though no request of this run has it."""
    prompt = [700 + t for t in range(BS + 8)]
    bridged.configure(BridgeConfig(policy="fcfs", slot_time=TAU))
    bridged.submit("earlier", len(prompt), 4, tokens=prompt)
    bridged.drain()
    bridged.configure(BridgeConfig(policy="fcfs", slot_time=TAU))  # a new run; the cache keeps its blocks
    for j in range(4):  # every seat (max_num_seqs=4) busy, so the next one waits
        bridged.submit(f"filler-{j}", 33, 12, tokens=[500 + 40 * j + t for t in range(33)])
    bridged.submit("again", len(prompt), 4, tokens=prompt)
    bridged.drain()
    assert any(k.startswith("hit again") for k in checked_lookup), "the waiting request hits the earlier run's block"
