"""vLLM as it ships (0.32.0 defaults: scheduler_reserve_full_isl on, watermark 0, chunked
prefill) against slosched's engine model, step by step, on a real tiny vLLM on CPU (slotted).

(a) vLLM's own, unmodified scheduler vs the simulator running `fcfs`;
(b) the bridge (SloScheduler) running `fcfs` vs vLLM's own scheduler;
(c) the bridge vs the simulator for every registered policy.
"Identical" means: the same tokens per request in every step (and the same slot), the same
completion order and the same preemption counts. The workload makes chunked prefill,
KV-driven preemptions and resumed requests (prompt + outputs recomputed, gated as a whole) happen,
and the gate changes the schedule on it (the tests assert each). Skipped only when vLLM is missing outside CI.
"""

from __future__ import annotations


import numpy as np
import pytest

from vllm_required import require_vllm  # noqa: E402

require_vllm()

import engine_adapter.simulator.engine as sim_engine  # noqa: E402
from engine_adapter.bridge_config import BridgeConfig  # noqa: E402
from engine_adapter.realized import realize  # noqa: E402
from engine_adapter.simulator import simulate  # noqa: E402
from engine_adapter.vllm_runner import VllmEngine, VllmSettings, recorded_schedules, replay, run_own_scheduler, scheduled_tokens  # noqa: E402
from formulations.instance import Instance  # noqa: E402
from formulations.requests import Request, RequestClass  # noqa: E402
from solvers.policies.registry import POLICIES, make_policy  # noqa: E402

TAU = 0.01
# 16 blocks of 32 tokens; 96-token budget: prompts above 96 tokens are chunked
SETTINGS = VllmSettings(kv_blocks=16, block_size=32, max_num_seqs=4, max_num_batched_tokens=96, max_model_len=512)


@pytest.fixture(scope="module")
def own() -> VllmEngine:
    return VllmEngine(SETTINGS)


@pytest.fixture(scope="module")
def bridged() -> VllmEngine:
    return VllmEngine(SETTINGS, BridgeConfig(policy="fcfs", slot_time=TAU))


def workload(spec) -> Instance:
    """Long prompts arriving close together (the gate holds some back while their first chunk
    would fit), long outputs (decodes grow into a full pool: preemptions, resumed requests)."""
    rng = np.random.default_rng(7)
    requests = []
    for i in range(12):
        cls = (RequestClass.LATENCY, RequestClass.THROUGHPUT)[i % 2]
        slo = dict(ttft_target=0.05, read_rate=40.0) if cls is RequestClass.LATENCY else dict(slack_ratio=3.0)
        requests.append(Request(f"q{i:02d}", cls, round(0.03 * i, 2), int(rng.integers(60, 260)),
                                int(rng.integers(40, 140)), **slo))
    return realize(Instance(spec, tuple(requests)), spec)


def simulated_steps(instance: Instance, policy: str, fast_forward: bool = True):
    """The simulator's (slot, tokens per request id) per iteration, with the Schedule. A
    fast-forwarded decode run forms its batch once and logs one `scheduled` array (the same
    object) for each of its iterations."""
    batches = []
    form_batch = sim_engine.form_batch

    def recording(state, *args):
        batch = form_batch(state, *args)
        if len(batch.slots):
            batches.append({instance.requests[i].id: c for i, c in
                            zip(state.idx[batch.slots].tolist(), batch.chunk.tolist(), strict=True)})
        return batch

    sim_engine.form_batch = recording
    try:
        schedule = simulate(instance, make_policy(policy), fast_forward=fast_forward, record_iterations=True)
    finally:
        sim_engine.form_batch = form_batch
    log = schedule.meta["iteration_log"]
    runs = np.cumsum([j == 0 or s is not log["scheduled"][j - 1] for j, s in enumerate(log["scheduled"])]) - 1
    assert len(runs) == 0 or runs[-1] == len(batches) - 1
    return [(round(t / TAU), batches[r]) for t, r in zip(log["start"], runs.tolist(), strict=True)], schedule


def bridged_steps(engine: VllmEngine, instance: Instance, policy: str):
    engine.configure(BridgeConfig(policy=policy, slot_time=TAU))
    with recorded_schedules(engine.scheduler) as outputs:
        result = replay(engine, instance)
    meta = result.schedule.meta
    assert meta["plan_deviations"] == 0 and meta["engine_preemptions"] == 0
    ran = [scheduled_tokens(o) for o in outputs if o.num_scheduled_tokens]
    starts = meta["iteration_log"]["start"]
    return [(round(t / TAU), b) for t, b in zip(starts, ran, strict=True)], result.schedule


def finish_order(schedule) -> list[str]:
    """Served requests in completion order (a rejected one never finishes: see `rejections`)."""
    served = [t for t in schedule.timelines if t.finish is not None]
    return [t.request_id for t in sorted(served, key=lambda t: (t.finish, t.request_id))]


def rejections(schedule) -> dict[str, float]:
    return {t.request_id: t.rejected for t in schedule.timelines if t.rejected is not None}


def preemption_counts(schedule) -> dict[str, int]:
    return {t.request_id: len(t.preemptions) for t in schedule.timelines}


@pytest.mark.parametrize("fast_forward", [True, False])
def test_a_vllm_default_scheduler_equals_the_simulators_fcfs(own, bridged, fast_forward):
    instance = workload(bridged.spec)
    assert bridged.spec.reserve_full_prompt and bridged.spec.watermark == 0.0
    theirs = run_own_scheduler(own, instance, TAU)
    mine, schedule = simulated_steps(instance, "fcfs", fast_forward)
    assert mine == theirs.steps
    assert finish_order(schedule) == theirs.finish_order
    assert preemption_counts(schedule) == theirs.preemptions
    assert sum(theirs.preemptions.values()) > 0, "the workload must make vLLM preempt"
    assert any(max(t.values()) == SETTINGS.max_num_batched_tokens for _, t in mine), "chunked prefill expected"


def test_the_gate_changes_the_schedule_of_this_workload(bridged):
    """Without the gate (first-chunk admission, the ablation rule) the same workload is scheduled
    differently, so the tests above exercise it. (One process holds at most the two engines
    above: vLLM's in-process engines share global distributed state.)"""
    gated, _ = simulated_steps(workload(bridged.spec), "fcfs")
    ungated, _ = simulated_steps(workload(bridged.spec.with_(reserve_full_prompt=False)), "fcfs")
    assert gated != ungated


def test_b_bridge_fcfs_equals_vllm_default_scheduler(own, bridged):
    instance = workload(bridged.spec)
    theirs = run_own_scheduler(own, instance, TAU)
    mine, schedule = bridged_steps(bridged, instance, "fcfs")
    assert mine == theirs.steps
    assert finish_order(schedule) == theirs.finish_order
    assert preemption_counts(schedule) == theirs.preemptions


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_c_bridge_equals_simulator_for_every_policy(bridged, policy):
    """The simulator as it runs by default (asking only at events, fast-forwarding decode runs):
    the bridge asks at the same events (engine_adapter/events.py)."""
    instance = workload(bridged.spec)
    mine, schedule = bridged_steps(bridged, instance, policy)
    sim, sim_schedule = simulated_steps(instance, policy)
    assert mine == sim
    assert finish_order(schedule) == finish_order(sim_schedule)
    assert rejections(schedule) == pytest.approx(rejections(sim_schedule))
    assert preemption_counts(schedule) == preemption_counts(sim_schedule)
    for a, b in zip(schedule.timelines, sim_schedule.timelines, strict=True):
        np.testing.assert_allclose(a.token_times, b.token_times, err_msg=a.request_id)


def test_asking_only_at_events_changes_the_schedule_of_this_workload(bridged):
    """For policies whose plan moves with time between events, asking at every step schedules
    this workload differently, so test (c) checks that the bridge asks at the simulator's events
    (and not at every step)."""
    instance = workload(bridged.spec)
    differ = [p for p in sorted(POLICIES)
              if simulated_steps(instance, p)[0] != simulated_steps(instance, p, fast_forward=False)[0]]
    assert {"andes", "slo"} <= set(differ), differ
