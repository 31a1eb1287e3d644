"""Streamed scoring (slosched run): the same results as scoring the whole schedule at the end,
with the finished requests' token times released as the run goes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import formulations.spilled_values as spilled
from engine_adapter.simulator import simulate
from engine_adapter.simulator.engine import _Simulator
from engine_adapter.simulator.request_state import TokenArena
from experiments.config import config_from_dict
from experiments.ordered_lines import OrderedLines
from experiments.runner import build_cell_instance, expand_cells, run_cell
from formulations.instance import Instance
from formulations.metrics import request_outcomes, summarize
from formulations.percentiles import Percentiles
from formulations.spilled_values import SpilledValues, order_statistics
from formulations.streamed_score import StreamedScore
from solvers.policies.registry import make_policy
from solvers.prediction.oracle import OraclePredictor
from tests.test_plan_reject import RejectAt
from tests.test_simulator_reference import reference_instance

CONFIG = {
    "name": "t", "seed": 2, "policies": ["fcfs", "slo"],
    "workload": {"limit": 400, "rate_scale": 3.0, "mix": {"latency": 0.5, "throughput": 0.3, "bulk": 0.2}},
    "engine": {"kv_blocks": 400},
}


@pytest.fixture
def small_spills(monkeypatch):
    """Tiny buffers, chunks and leaves: every path of the spilled statistics runs on small data."""
    for name, value in (("FLUSH", 7), ("CHUNK", 64), ("LEAF", 128), ("IN_MEMORY", 0)):
        monkeypatch.setattr(spilled, name, value)


def streamed(instance: Instance, policy, qoe_threshold: float = 0.95, tmp=None):
    emitted = {}
    scorer = StreamedScore(instance, qoe_threshold, lambda i, o: emitted.__setitem__(i, o), tmp)
    schedule = simulate(instance, policy, OraclePredictor(), on_done=scorer.add)
    return scorer.metrics(), [emitted[i] for i in range(len(instance.requests))], schedule


@pytest.mark.parametrize("policy", ["fcfs", "slo", "reject"])
@pytest.mark.parametrize("spill", [False, True])
def test_streamed_metrics_and_outcomes_equal_scoring_the_whole_schedule(policy, spill, tmp_path, request):
    if spill:
        request.getfixturevalue("small_spills")
    instance = reference_instance(None, "recompute", n=200)
    make = (lambda: RejectAt(target=7, at=0.3)) if policy == "reject" else (lambda: make_policy(policy))
    whole = simulate(instance, make(), OraclePredictor())
    expected = request_outcomes(instance, whole, token_lists=False)
    metrics, outcomes, schedule = streamed(instance, make(), tmp=tmp_path)
    assert schedule.timelines == [] and schedule.iterations == whole.iterations
    assert metrics.to_dict() == summarize(expected).to_dict()  # exact floats, not approx
    assert metrics.tbt.mean is not None and (policy != "reject" or metrics.rejected >= 1)
    for got, want in zip(outcomes, expected, strict=True):
        assert got.to_dict().keys() == want.to_dict().keys()
        assert {k: v for k, v in got.to_dict().items() if k != "token_times"} == \
               {k: v for k, v in want.to_dict().items() if k != "token_times"}
        assert np.array_equal(got.token_times, want.token_times)


def test_a_streamed_run_cell_gives_the_same_metrics_and_schedule_lines(tmp_path):
    for cell in expand_cells(config_from_dict(CONFIG)):
        before = run_cell(cell)
        path = tmp_path / f"{cell.policy}.jsonl"
        after = run_cell(cell, schedule_path=path, streamed_in=tmp_path)
        assert after.metrics == before.metrics and after.outcomes == [] and after.iterations == before.iterations
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [line["id"] for line in lines] == [o["id"] for o in before.outcomes]  # instance order
        assert lines == [{"id": o["id"], "class": o["class"], **o} for o in before.outcomes]
        assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".jsonl") == []  # temp files gone


def test_finished_requests_tokens_are_released_during_the_run():
    config = config_from_dict({**CONFIG, "workload": {**CONFIG["workload"], "limit": 2000, "rate_scale": 0.5},
                               "engine": {"kv_blocks": 2000}})
    instance = build_cell_instance(expand_cells(config)[0])
    total = int(instance.table.output_len.sum())
    sim = _Simulator(instance, make_policy("fcfs"), OraclePredictor(), False, None, True)
    held, live, seen = [], [], []

    def on_done(index, timeline):
        held.append(len(sim.state.tokens.buffer))
        live.append(sim.state.tokens.live)
        seen.append(index)
        assert len(sim.state.admissions) <= sim.state.n_live  # only live requests keep their history

    sim.run(on_done)
    assert sorted(seen) == list(range(len(instance.requests)))  # each timeline handed over once
    assert max(held) <= max(2 * max(live) + 2 * instance.table.output_len.max(), TokenArena.INITIAL)
    assert max(held) < total / 4 and max(live) < total / 10  # far below keeping every token of the run
    assert not sim.state.admissions and not sim.state.preemption_times


@pytest.mark.parametrize("seed", range(4))
def test_spilled_percentiles_are_exactly_numpys(seed, small_spills, tmp_path):
    rng = np.random.default_rng(seed)
    n = 60
    arrays = {k: np.round(rng.exponential(0.05, int(rng.integers(0, 40))), int(rng.integers(1, 9))) for k in range(n)}
    arrays[3] = -arrays[3]  # negative values and zeros sort right too
    arrays[5] = np.zeros(9)
    store = SpilledValues(n, tmp_path)
    for k in rng.permutation(n).tolist():  # added in any order, read back in key order
        store.add(k, arrays[k])
    whole = np.concatenate([arrays[k] for k in range(n)])
    assert np.array_equal(store.ordered(0, len(whole)), whole)
    assert store.percentiles() == Percentiles.of(whole.copy())


def test_order_statistics_match_sorting():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0, 1e3, 500), np.full(300, 0.25), rng.exponential(1e-6, 200)])
    ranks = [0, 1, 499, 777, 999]
    chunks = lambda: iter(np.array_split(values, 7))  # noqa: E731
    assert order_statistics(chunks, ranks) == {r: float(np.sort(values)[r]) for r in ranks}


def test_ordered_lines_come_out_in_key_order_through_the_disk(tmp_path):
    out = io.StringIO()
    lines = OrderedLines(out, 50, tmp_path, memory=40)
    for k in np.random.default_rng(0).permutation(50).tolist():
        lines.put(k, f"line {k}\n")
    lines.close()
    assert out.getvalue() == "".join(f"line {k}\n" for k in range(50))
    short = OrderedLines(io.StringIO(), 3, tmp_path)
    short.put(1, "x\n")
    with pytest.raises(ValueError, match="line 0 of 3 never came"):
        short.close()


@pytest.mark.parametrize("slot_time", [None, 0.02])
def test_streamed_scoring_of_conversations_equals_the_whole_schedule(slot_time, tmp_path):
    """Later turns are judged from their previous turn's finish and prefix hits are counted per
    request: the streamed path must give the same sent times, hit counts and hit rate."""
    from tests.test_multiturn import chat, engine

    instance = chat(engine(slot_time=slot_time), n=4, turns=3)
    whole = simulate(instance, make_policy("fcfs"), OraclePredictor())
    expected = request_outcomes(instance, whole, token_lists=False)
    metrics, outcomes, _ = streamed(instance, make_policy("fcfs"), tmp=tmp_path)
    assert metrics.to_dict() == summarize(expected).to_dict()
    assert metrics.prefix_hit_rate > 0 and sum(o.after is not None for o in outcomes) == 8
    for got, want in zip(outcomes, expected, strict=True):
        assert (got.sent, got.cached_tokens, got.queried_tokens, got.qoe) == \
               (want.sent, want.cached_tokens, want.queried_tokens, want.qoe)
