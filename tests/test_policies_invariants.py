"""Every policy of issue 4 keeps the engine's invariants on random instances (simulator runs)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine_adapter.simulator import simulate
from experiments.studies.optimality_gap import InstanceSpec, random_instance
from formulations.instance import Instance
from solvers.policies.registry import POLICIES as REGISTERED
from solvers.policies.registry import make_policy
from solvers.prediction.oracle import NoisyOraclePredictor

POLICIES = ["andes", "slo", "gain-density", "ltr"]


def with_shared_prefixes(instance: Instance, seed: int) -> Instance:
    """The same instance with content ids: each request starts with some blocks of one of three
    shared prefixes (content blocks of 1-2 engine blocks), then its own ids."""
    rng = np.random.default_rng(seed)
    per_id = instance.engine.block_size * int(rng.integers(1, 3))
    families = [rng.integers(0, 3, size=12).tolist() for _ in range(3)]
    own = iter(range(1000, 10**6))
    requests = []
    for r in instance.requests:
        most = -(-(r.prompt_len + r.output_len) // per_id)
        shared = families[int(rng.integers(3))][: int(rng.integers(0, most + 1))]
        ids = shared + [next(own) for _ in range(int(rng.integers(0, most - len(shared) + 1)))]
        requests.append(dataclasses.replace(r, content_ids=tuple(ids), content_block=per_id))
    return Instance(instance.engine, tuple(requests), instance.groups)


def _check(instance: Instance, schedule) -> None:
    engine = instance.engine
    log = schedule.meta["iteration_log"]
    assert np.all(log["kv_used_blocks"] <= engine.kv_blocks)
    assert np.all(log["tokens"] <= engine.token_budget)
    assert np.all(log["seqs"] <= engine.max_seqs)
    for req, tl in zip(instance.requests, schedule.timelines, strict=True):
        assert np.all(np.diff(tl.token_times) > 0)
        if tl.rejected is not None:  # rejected (Plan.reject): unserved, the rest of its tokens never come
            assert tl.finish is None and len(tl.token_times) < req.output_len, req.id
            assert np.all(tl.token_times <= tl.rejected)
            continue
        assert len(tl.token_times) == req.output_len, req.id  # every other request completes
        assert tl.token_times[0] > tl.release >= req.arrival
        assert tl.finish == pytest.approx(tl.token_times[-1])


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), latency_mode=st.booleans(), noisy=st.booleans())
def test_policy_keeps_engine_invariants(policy, seed, latency_mode, noisy):
    instance = random_instance(seed, InstanceSpec(max_requests=12, kv_blocks=12))
    if latency_mode:
        instance = Instance(instance.engine.with_(slot_time=None), instance.requests, instance.groups)
    predictor = NoisyOraclePredictor(sigma=0.8, seed=seed) if noisy else None
    schedule = simulate(instance, make_policy(policy), predictor, record_iterations=True)
    _check(instance, schedule)


@pytest.mark.parametrize("policy", ["fcfs", *POLICIES])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), latency_mode=st.booleans(), gate=st.booleans())
def test_policy_keeps_engine_invariants_with_shared_prefixes(policy, seed, latency_mode, gate):
    instance = with_shared_prefixes(random_instance(seed, InstanceSpec(max_requests=12, kv_blocks=12)), seed)
    engine = instance.engine.with_(reserve_full_prompt=gate)
    if latency_mode:
        engine = engine.with_(slot_time=None)
    instance = Instance(engine, instance.requests, instance.groups)
    schedule = simulate(instance, make_policy(policy), record_iterations=True)
    _check(instance, schedule)
    stats = schedule.meta["prefix_cache"]
    assert 0 <= stats["hit_tokens"] < stats["query_tokens"]


def _idle_while_work_is_live(schedule) -> list[float]:
    """Times at which the engine sat idle although a released request was unfinished."""
    log = schedule.meta["iteration_log"]
    start, end = np.asarray(log["start"]), np.asarray(log["end"])
    gaps = end[:-1][start[1:] > end[:-1] + 1e-9]
    idle = []
    for t in gaps.tolist():
        for tl in schedule.timelines:
            stop = tl.rejected if tl.rejected is not None else tl.finish
            if tl.release <= t + 1e-9 and stop is not None and stop > t + 1e-9:
                idle.append(t)
                break
    return idle


# prompts of up to 8 of the 14 blocks, chunked (24-token budget): the gate holds requests back
# whose first chunk would fit; every request fits the cache alone (at most 13 blocks)
GATED = InstanceSpec(max_requests=12, kv_blocks=14, prompt=(10, 32), output=(4, 20))


@pytest.mark.parametrize("policy", sorted(REGISTERED))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6))
@example(seed=70732)  # slo rejected a resident group and left the blocks it freed unused
def test_no_policy_idles_the_engine_under_the_admission_gate(policy, seed):
    """With vLLM's full-prompt gate and a small KV cache, asked before every iteration (the
    bridge's mode), no policy plans a batch that runs nothing while work is live (such a plan
    stalls: SimulationStalled)."""
    instance = random_instance(seed, GATED)
    assert instance.engine.reserve_full_prompt
    schedule = simulate(instance, make_policy(policy), fast_forward=False, record_iterations=True)
    _check(instance, schedule)
    assert _idle_while_work_is_live(schedule) == []
