"""Closed-loop multi-turn chat on a real tiny vLLM engine on CPU in slotted mode: vLLM's own
default scheduler (prefix caching on, full-prompt gate on) against the simulator's `fcfs`, and the
bridge (SloScheduler) running each policy against the simulator running the same policy.

Conversations of 2-3 turns: every first turn starts with a shared 2-block system prompt; turn k+1
is turn k's prompt and the answer vLLM actually generated plus a new message, submitted only
after turn k finished plus a think time of 0-4 slots (the runner feeds the closed loop). KV is
tight (chunked prefill, preemptions, evicted cached contexts). Identical: every step's requests
and token counts, the completion order, each request's preemptions and prefix-cache hit tokens.
Skipped only when vLLM is missing outside CI.
"""

from __future__ import annotations

import random

import pytest

from vllm_required import require_vllm  # noqa: E402

require_vllm()

from test_vllm_default import bridged_steps, finish_order, preemption_counts  # noqa: E402
# the engines of the prefix-caching tests (the same settings; module-scoped here too)
from test_vllm_prefix import (BS, SETTINGS, TAU, bridged, engine, own_scheduler_matches_fcfs,  # noqa: E402, F401
                              simulated_steps, spec)

from engine_adapter.realized import realize  # noqa: E402
from engine_adapter.simulator import simulate  # noqa: E402
from engine_adapter.vllm_runner import recorded_hits  # noqa: E402
from experiments.workloads.turns import conversation_turns  # noqa: E402
from formulations.instance import Instance  # noqa: E402
from solvers.policies.registry import POLICIES, make_policy  # noqa: E402

SYSTEM = (1, 2)  # content ids of the system prompt every first turn starts with


def conversations(seed: int, n: int = 5) -> Instance:
    """n conversations starting over the first slots, 2-3 turns each, think times 0-4 slots."""
    rng = random.Random(seed)
    fresh = iter(range(100, 10**6))
    requests = []
    for j in range(n):
        turns = rng.choice((2, 3))
        answers = [rng.randint(6, 30) for _ in range(turns)]
        prompts = [len(SYSTEM) * BS + rng.randint(5, 40)]
        for k in range(1, turns):
            prompts.append(prompts[-1] + answers[k - 1] + rng.randint(4, 30))
        think = [rng.randint(0, 4) * TAU for _ in range(turns)]
        requests += conversation_turns(f"c{j}", prompts, answers, round(rng.randint(0, 5) * TAU, 6), think, BS, fresh,
                                       ttft_targets=[0.3] * turns, read_rate=20.0, first_ids=SYSTEM)
    return Instance(spec(), tuple(requests))


def released_after_finish(instance: Instance, schedule) -> None:
    """Every later turn was released exactly its think time (whole slots) after its previous turn finished."""
    by_id = schedule.by_id()
    for r in instance.requests:
        if r.after is not None:
            assert by_id[r.id].release == pytest.approx(by_id[r.after].finish + round(r.think_time / TAU) * TAU)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vllm_default_scheduler_matches_simulator_fcfs_on_conversations(engine, seed) -> None:  # noqa: F811
    instance = conversations(seed)
    sim = simulate(instance, make_policy("fcfs"), record_iterations=True)
    released_after_finish(instance, sim)
    ref = own_scheduler_matches_fcfs(engine, instance, sim)
    later = [r.id for r in instance.requests if r.after is not None]
    assert sum(ref.hits_of[rid] for rid in later) > len(later) * len(SYSTEM) * BS, "later turns must hit their context"
    assert sum(ref.preemptions.values()) > 0, "the workload must make vLLM preempt"
    assert any(sum(per.values()) == SETTINGS.max_num_batched_tokens for _, per in ref.steps), "chunked prefill expected"


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_bridge_matches_simulator_per_policy_on_conversations(bridged, policy) -> None:  # noqa: F811
    """Both ask the policy at the same events (engine_adapter/events.py), so the simulator runs
    as by default (fast-forwarding decode runs)."""
    instance = realize(conversations(0), bridged.spec)
    with recorded_hits(bridged.scheduler) as hits:
        mine, schedule = bridged_steps(bridged, instance, policy)
    sim_schedule = simulate(instance, make_policy(policy), record_iterations=True)
    released_after_finish(instance, schedule)
    assert [(slot, sorted(per), sum(per.values())) for slot, per in mine] == simulated_steps(instance, sim_schedule)
    assert finish_order(schedule) == finish_order(sim_schedule)
    assert preemption_counts(schedule) == preemption_counts(sim_schedule)
    assert {r.id: hits.get(r.id, 0) for r in instance.requests} == sim_schedule.meta["prefix_cache"]["hits_of"]
    assert [t.release for t in schedule.timelines] == pytest.approx([t.release for t in sim_schedule.timelines])
