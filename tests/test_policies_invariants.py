"""Every policy of issue 4 keeps the engine's invariants on random instances (simulator runs)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_adapter.simulator import simulate
from experiments.studies.optimality_gap import InstanceSpec, random_instance
from formulations.instance import Instance
from solvers.policies.registry import make_policy
from solvers.prediction.oracle import NoisyOraclePredictor

POLICIES = ["andes", "slo", "gain-density", "ltr"]


def _check(instance: Instance, schedule) -> None:
    engine = instance.engine
    log = schedule.meta["iteration_log"]
    assert np.all(log["kv_used_blocks"] <= engine.kv_blocks)
    assert np.all(log["tokens"] <= engine.token_budget)
    assert np.all(log["seqs"] <= engine.max_seqs)
    for req, tl in zip(instance.requests, schedule.timelines, strict=True):
        assert len(tl.token_times) == req.output_len, req.id  # every request completes
        assert np.all(np.diff(tl.token_times) > 0)
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
