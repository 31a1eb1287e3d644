"""Baseline policies (fcfs, edf, sjf) and the policy/predictor registries."""

from __future__ import annotations

import numpy as np
import pytest

from engine_adapter.simulator import simulate
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import LatencyModel
from formulations.online import EngineView
from formulations.requests import Request, RequestClass, ValidationError
from solvers.policies.registry import POLICIES, make_policy
from solvers.prediction.oracle import NoisyOraclePredictor, OraclePredictor
from solvers.prediction.registry import PREDICTORS, make_predictor

LAT = LatencyModel(c0=0.01, c_prefill=0.001, c_decode=0.002, c_ctx=0.0001)
SPEC = EngineSpec(kv_blocks=100, latency=LAT, block_size=4, token_budget=64, max_seqs=8)
NAN = np.nan


def view(**cols) -> EngineView:
    n = len(cols["idx"])
    base = dict(
        now=10.0, cls=np.ones(n, dtype=np.int8), arrival=np.zeros(n), release=np.zeros(n),
        prompt_len=np.full(n, 4), generated=np.zeros(n, dtype=np.int64), computed=np.zeros(n, dtype=np.int64),
        prefill_left=np.full(n, 4), resident=np.zeros(n, dtype=bool), kv_blocks=np.zeros(n, dtype=np.int64),
        ttft_target=np.full(n, NAN), read_rate=np.full(n, NAN), lag=np.zeros(n), delay_area=np.zeros(n),
        deadline=np.full(n, 100.0), group=np.full(n, -1), preemptions=np.zeros(n, dtype=np.int64),
        pred_quantiles=np.full((n, 3), 10.0), quantile_levels=(0.1, 0.5, 0.9), free_blocks=100, engine=SPEC,
    )
    base.update(cols)
    base["idx"] = np.asarray(base["idx"], dtype=np.int64)
    return EngineView(**base)


def test_fcfs_running_in_admission_order_then_waiting_by_arrival() -> None:
    fcfs = make_policy("fcfs")
    fcfs.reset(SPEC)
    # 5 and 2 became resident at the first decision (admitted in arrival order: 2 then 5)
    v1 = view(idx=[5, 2, 7, 3], arrival=np.array([1.0, 0.5, 0.2, 3.0]), resident=np.array([True, True, False, False]))
    assert fcfs.decide(v1).run.tolist() == [2, 5, 7, 3]
    # now 7 is admitted too (after 2 and 5) although it arrived first; 2 was preempted (waiting again)
    v2 = view(idx=[5, 2, 7, 3], arrival=np.array([1.0, 0.5, 0.2, 3.0]), resident=np.array([True, False, True, False]))
    assert fcfs.decide(v2).run.tolist() == [5, 7, 2, 3]
    # 2 re-admitted: it is now the most recently admitted, so it runs last among the running
    v3 = view(idx=[5, 2, 7, 3], arrival=np.array([1.0, 0.5, 0.2, 3.0]), resident=np.array([True, True, True, False]))
    assert fcfs.decide(v3).run.tolist() == [5, 7, 2, 3]


def test_fcfs_in_simulator_evicts_most_recently_admitted() -> None:
    # KV fits about two growing requests: the third admitted one is evicted first
    spec = EngineSpec(kv_blocks=12, latency=LAT, block_size=1, token_budget=64, max_seqs=8, slot_time=1.0)
    reqs = tuple(Request(f"r{i}", RequestClass.THROUGHPUT, 0.1 * i, 3, 6, slack_ratio=2.0) for i in range(3))
    sched = simulate(Instance(spec, reqs), make_policy("fcfs"))
    pre = [len(tl.preemptions) for tl in sched.timelines]
    assert pre[0] == 0 and pre[2] >= 1
    assert sched.timelines[0].finish < sched.timelines[2].finish


def test_edf_orders_by_next_token_ideal_time_and_deadlines() -> None:
    edf = make_policy("edf")
    # latency 0: arrival 0 + ttft 1 + 10 generated / rate 5 = 3.0; latency 1: 2 + 0.5 + 0/1 = 2.5;
    # throughput 2: deadline 2.8; bulk 3: group deadline 1.0
    v = view(idx=[0, 1, 2, 3], cls=np.array([0, 0, 1, 2], dtype=np.int8), arrival=np.array([0.0, 2.0, 0.0, 0.0]),
             generated=np.array([10, 0, 0, 0]), ttft_target=np.array([1.0, 0.5, NAN, NAN]),
             read_rate=np.array([5.0, 1.0, NAN, NAN]), deadline=np.array([NAN, NAN, 2.8, 1.0]))
    assert edf.decide(v).run.tolist() == [3, 1, 2, 0]


def test_sjf_orders_by_predicted_remaining() -> None:
    sjf = make_policy("sjf")
    pred = np.array([[5, 50, 90], [5, 20, 30], [5, 12, 30], [5, 20, 30]], dtype=float)
    v = view(idx=[0, 1, 2, 3], pred_quantiles=pred, generated=np.array([45, 0, 0, 0]),
             arrival=np.array([0.0, 2.0, 0.0, 1.0]))
    # remaining: 5, 20, 12, 20 (tie 1 vs 3 broken by arrival)
    assert sjf.decide(v).run.tolist() == [0, 2, 3, 1]


@pytest.mark.parametrize("name", ["fcfs", "edf", "sjf"])
def test_every_baseline_finishes_a_mixed_workload(name) -> None:
    rng = np.random.default_rng(0)
    reqs = []
    for i in range(30):
        cls = RequestClass.LATENCY if i % 2 else RequestClass.THROUGHPUT
        slo = dict(ttft_target=0.5, read_rate=20.0) if cls is RequestClass.LATENCY else dict(slack_ratio=3.0)
        reqs.append(Request(f"r{i}", cls, float(rng.uniform(0, 2)), int(rng.integers(1, 60)), int(rng.integers(1, 40)), **slo))
    spec = EngineSpec(kv_blocks=30, latency=LAT, block_size=4, token_budget=32, max_seqs=4)
    sched = simulate(Instance(spec, tuple(reqs)), make_policy(name))
    assert all(len(tl.token_times) == r.output_len for tl, r in zip(sched.timelines, reqs, strict=True))


def test_policy_registry_errors_list_valid_choices() -> None:
    assert {"fcfs", "edf", "sjf"} <= set(POLICIES)
    with pytest.raises(ValidationError, match="unknown policy .lifo.; valid: fcfs, edf, sjf, .* or package.module:Class"):
        make_policy("lifo")
    with pytest.raises(ValidationError, match="policy 'fcfs': unknown parameter"):
        make_policy("fcfs", alpha=1)


def test_predictor_registry() -> None:
    assert isinstance(make_predictor("oracle"), OraclePredictor)
    noisy = make_predictor("noisy", sigma=0.3, seed=4)
    assert isinstance(noisy, NoisyOraclePredictor) and noisy.sigma == 0.3 and noisy.seed == 4
    assert {"oracle", "noisy"} <= set(PREDICTORS)
    with pytest.raises(ValidationError, match="unknown predictor .magic.; valid: oracle, noisy"):
        make_predictor("magic")
    with pytest.raises(ValidationError, match="predictor 'noisy': unknown parameter"):
        make_predictor("noisy", sigma=0.1, mu=2)
    with pytest.raises(ValidationError, match="predictor 'noisy'.*sigma"):
        make_predictor("noisy")
