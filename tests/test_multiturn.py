"""Closed-loop multi-turn conversations: turns released after their previous turn finishes plus
a think time (timed and slotted), prompts that grow by the whole context, content ids that share
it, prefix-cache hits with caching on and none without, TTFT/QoE from the release, explicit
statuses for turns of a rejected turn, the exact models' refusal, and clear config errors."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from engine_adapter.simulator import simulate
from experiments.config import config_from_dict
from experiments.errors import ConfigError
from experiments.workloads import ClassMix, Dist, WorkloadConfig
from experiments.workloads.spec import MultiTurn
from experiments.workloads.turns import conversation_turns
from formulations.bounds.intervals import build_relaxation
from formulations.engine_spec import EngineSpec
from formulations.exact.build import build_model
from formulations.instance import Instance
from formulations.latency_model import LatencyModel
from formulations.metrics import request_outcomes, score
from formulations.online import Plan, Policy
from formulations.requests import RequestClass, ValidationError
from formulations.turns import think_slots, turn_release
from solvers.policies.registry import make_policy

TAU = 0.01
BS = 16
SLO = dict(ttft_target=0.05, read_rate=50.0)


def engine(slot_time: float | None = TAU, caching: bool = True, kv_blocks: int = 60) -> EngineSpec:
    latency = LatencyModel(c0=TAU, c_prefill=1e-4, c_decode=1e-4, c_ctx=0.0)
    return EngineSpec(kv_blocks=kv_blocks, latency=latency, block_size=BS, token_budget=64, max_seqs=4,
                      slot_time=slot_time, enable_prefix_caching=caching)


def chat(spec: EngineSpec, n: int = 3, turns: int = 3, think: float = 0.05) -> Instance:
    fresh = itertools.count(1)
    requests = []
    for j in range(n):
        answers = [10 + 3 * k + j for k in range(turns)]
        prompts = [20 + j]
        for k in range(1, turns):
            prompts.append(prompts[-1] + answers[k - 1] + 7)
        requests += conversation_turns(f"c{j}", prompts, answers, 0.02 * j, [think] * turns, BS, fresh,
                                       ttft_targets=[SLO["ttft_target"]] * turns, read_rate=SLO["read_rate"])
    return Instance(spec, tuple(requests))


@pytest.mark.parametrize("slot_time", [TAU, None])
@pytest.mark.parametrize("policy", ["fcfs", "edf", "slo"])
def test_each_turn_is_released_think_time_after_its_previous_turn_finished(slot_time, policy):
    inst = chat(engine(slot_time))
    schedule = simulate(inst, make_policy(policy))
    by_id = schedule.by_id()
    for r in inst.requests:
        tl = by_id[r.id]
        assert tl.finish is not None
        if r.after is None:
            assert tl.release == pytest.approx(r.arrival, abs=TAU)
            continue
        sent = turn_release(by_id[r.after].finish, r.think_time, slot_time)
        if slot_time is None:  # made live at the end of the iteration in progress, as an arrival is
            assert sent <= tl.release < sent + 0.05
        else:
            assert tl.release == pytest.approx(sent)
        assert tl.release > by_id[r.after].finish and tl.admissions[0] >= tl.release


def test_slotted_think_time_is_whole_slots_rounded_up():
    assert think_slots(3 * TAU, TAU) == 3  # m * tau written as a float is m slots
    assert think_slots(0.025, TAU) == 3 and think_slots(0.0, TAU) == 0
    assert turn_release(0.07, 0.03, TAU) == pytest.approx(0.10)
    assert turn_release(0.07, 0.03, None) == pytest.approx(0.10)


def test_prompts_grow_by_the_whole_context_and_content_ids_share_it():
    inst = chat(engine())
    by_id = inst.by_id
    for r in inst.requests:
        if r.after is None:
            continue
        prev = by_id[r.after]
        context = prev.prompt_len + prev.output_len
        assert r.prompt_len > context  # previous prompt + answer + a new message
        shared = context // BS
        assert r.content_ids[:shared] == prev.content_ids[:shared]
        assert not set(r.content_ids[shared:]) & set(prev.content_ids)
        assert len(r.content_ids) == math.ceil((r.prompt_len + r.output_len) / BS)


def test_hit_rate_is_positive_with_prefix_caching_and_zero_without():
    on = chat(engine(caching=True))
    off = chat(engine(caching=False))
    hits_on = score(on, simulate(on, make_policy("fcfs"))).prefix_hit_rate
    assert 0.3 < hits_on < 1.0
    assert score(off, simulate(off, make_policy("fcfs"))).prefix_hit_rate == 0.0
    # every later turn hits (at least) the full blocks of its previous turn's prompt
    outcomes = {o.id: o for o in request_outcomes(on, simulate(on, make_policy("fcfs")))}
    for r in on.requests:
        if r.after is not None:
            assert outcomes[r.id].cached_tokens >= on.by_id[r.after].prompt_len // BS * BS


def test_ttft_and_qoe_count_from_the_release_not_the_conversation_start():
    inst = chat(engine(), n=1, turns=2, think=5.0)  # a long think: from the start, turn 2 would be late
    schedule = simulate(inst, make_policy("fcfs"))
    outcomes = {o.id: o for o in request_outcomes(inst, schedule)}
    later = outcomes["c0t1"]
    assert later.sent == pytest.approx(later.release) and later.sent == pytest.approx(outcomes["c0t0"].finish + 5.0)
    assert later.token_times[0] - later.release < SLO["ttft_target"]
    assert later.qoe == 1.0 and later.slo_met
    metrics = score(inst, schedule)
    assert metrics.ttft.p90 < SLO["ttft_target"] and metrics.attainment == 1.0


class _RejectFirst(Policy):
    """Rejects c0t0 when it first sees it; runs everything else in index order."""

    name = "reject-first"

    def decide(self, view):
        reject = view.idx[view.idx == 0]
        return Plan(run=np.sort(view.idx[view.idx != 0]), reject=reject)


def test_turns_of_a_rejected_turn_are_rejected_with_it_not_dropped():
    inst = chat(engine(), n=2, turns=3)
    schedule = simulate(inst, _RejectFirst())
    outcomes = {o.id: o for o in request_outcomes(inst, schedule)}
    for rid in ("c0t0", "c0t1", "c0t2"):
        assert outcomes[rid].rejected_at is not None and not outcomes[rid].slo_met
    assert outcomes["c0t1"].release is None and outcomes["c0t2"].release is None  # never sent
    assert all(outcomes[f"c1t{k}"].finish is not None for k in range(3))
    metrics = score(inst, schedule)
    assert metrics.rejected == 3 and metrics.unfinished == 0


def test_exact_models_reject_closed_loop_instances_in_one_line():
    inst = chat(engine(caching=False), n=1, turns=2)
    for build in (build_model, build_relaxation):
        with pytest.raises(ValidationError, match=r"after='c0t0'.*release depends on the schedule") as err:
            build(inst)
        assert "\n" not in str(err.value)


def test_http_bench_refuses_closed_loop_instances_in_one_line():
    from engine_adapter.http_replay import Replay, ReplaySettings

    with pytest.raises(ValidationError, match=r"after='c0t0'.*slosched bench cannot replay it") as err:
        Replay(chat(engine(), n=1, turns=2), ReplaySettings(url="http://127.0.0.1:1/v1", model="m"))
    assert "\n" not in str(err.value)


def test_instance_json_round_trip_keeps_turns():
    inst = chat(engine())
    again = Instance.from_dict(inst.to_dict())
    assert again.requests == inst.requests
    assert again.table.after.tolist() == [-1, 0, 1, -1, 3, 4, -1, 6, 7]


@pytest.mark.parametrize(("change", "message"), [
    (dict(after="nope"), "after='nope' must name an earlier request"),
    (dict(think_time=-1.0), "think_time=-1.0 must be a finite number >= 0"),
    (dict(arrival=0.5), "differs from its previous turn's"),
    (dict(cls=RequestClass.THROUGHPUT, ttft_target=None, read_rate=None, slack_ratio=2.0), "must be latency class"),
])
def test_bad_turns_are_one_line_errors(change, message):
    first, second = chat(engine(), n=1, turns=2).requests
    with pytest.raises(ValidationError, match=message) as err:
        Instance(engine(), (first, replace(second, **change)))
    assert "\n" not in str(err.value)
    with pytest.raises(ValidationError, match="think_time=1.0 without after"):
        Instance(engine(), (replace(first, think_time=1.0),))


@pytest.mark.parametrize(("workload", "message"), [
    ({"kind": "loop"}, "workload.kind='loop'; valid: requests, multi-turn"),
    ({"kind": "multi-turn", "mix": {"latency": 0.5, "throughput": 0.5}}, "multi-turn workload is latency only"),
    ({"kind": "multi-turn", "multi_turn": {"min_turns": 4, "max_turns": 2}}, "need 1 <= min_turns <= max_turns"),
    ({"kind": "multi-turn", "multi_turn": {"think": {"kind": "uniform", "low": 5.0, "high": 1.0}}},
     "uniform needs 0 < low <= high"),
])
def test_multi_turn_config_errors_are_one_line(workload, message):
    with pytest.raises(ConfigError, match=message) as err:
        config_from_dict({"policies": ["fcfs"], "workload": workload})
    assert "\n" not in str(err.value)


def test_prefix_caching_sweep_makes_one_cell_per_variant():
    from experiments.runner import expand_cells

    config = config_from_dict({"policies": ["fcfs", "edf"], "sweep": {"prefix_caching": [True, False]}})
    cells = expand_cells(config)
    assert sorted(c.key for c in cells) == ["edf-rs1-seed0-cache-off", "edf-rs1-seed0-cache-on",
                                            "fcfs-rs1-seed0-cache-off", "fcfs-rs1-seed0-cache-on"]
    assert {c.key: c.config.engine.build().enable_prefix_caching for c in cells}["fcfs-rs1-seed0-cache-off"] is False
    with pytest.raises(ConfigError, match=r"sweep.prefix_caching\[0\] = 'yes'"):
        config_from_dict({"policies": ["fcfs"], "sweep": {"prefix_caching": ["yes"]}})


def test_caching_variants_are_labelled_in_the_table_and_the_metrics_document():
    from experiments.cli.run import metrics_document
    from experiments.cli.run_table import run_table
    from experiments.runner import execute, expand_cells

    config = config_from_dict({"policies": ["fcfs"], "workload": {"limit": 30},
                               "sweep": {"prefix_caching": [True, False]}})
    results = execute(expand_cells(config))
    table = run_table(config, results, sweep=True)
    assert "prefix\ncache" in table.headers and "hit\n%" in table.headers
    assert [row[2] for row in table.rows] == ["on", "off"]
    document = metrics_document(results)["fcfs"]
    assert [d["prefix_caching"] for d in document] == ["on", "off"]
    assert all(d["prefix_hit_rate"] == 0.0 for d in document)  # azure-conv carries no content ids


def test_shipped_multi_turn_config_loads_and_round_trips():
    from importlib import resources
    from pathlib import Path

    from experiments.config import load_config
    from experiments.runner import Cell, expand_cells

    config = load_config(Path(str(resources.files("experiments") / "configs")) / "multi-turn.toml")
    assert config.workload.kind == "multi-turn" and config.sweep.prefix_caching == (True, False)
    assert config_from_dict(config.to_dict()) == config
    cells = expand_cells(config)
    assert len(cells) == 2 * len(config.policies)
    assert [Cell.from_dict(c.to_dict()).key for c in cells] == [c.key for c in cells]


def test_sharegpt_conversations_become_closed_loop_turns():
    from experiments.workloads.sharegpt.conversations import build_multi_turn_instance
    from experiments.workloads.sharegpt.data import load_pairs
    from experiments.workloads.sharegpt.split import is_test

    spec = EngineSpec.from_profile("llama3-8b-h100", kv_blocks=4000)
    config = WorkloadConfig(kind="multi-turn", trace="sharegpt", limit=20, arrivals="poisson", rate=2.0,
                            mix=ClassMix(latency=1.0), multi_turn=MultiTurn(min_turns=2, max_turns=4,
                                                                             think=Dist(kind="fixed", value=3.0)))
    inst = build_multi_turn_instance(config, spec, seed=0)
    meta = inst.meta["multi_turn"]
    assert len(meta["conversations"]) == 20 and np.all(is_test(meta["conversations"]))
    firsts = [r for r in inst.requests if r.after is None]
    assert len(firsts) == 20 and 40 <= len(inst.requests) <= 80
    assert all(r.think_time == 3.0 for r in inst.requests if r.after is not None)
    # the first turn's prompt and every answer are the conversation's real token counts
    pairs = load_pairs("all")
    first_pair = {c: (p, o) for c, t, p, o in zip(pairs.conversation, pairs.turn, pairs.prompt_len,
                                                  pairs.output_len) if t == 0}
    for conv, first in zip(meta["conversations"], firsts, strict=True):
        assert (first.prompt_len, first.output_len) == first_pair[conv]
    again = build_multi_turn_instance(config, spec, seed=0)
    assert again.requests == inst.requests  # seeded
    assert build_multi_turn_instance(config, spec, seed=1).requests != inst.requests
    on = simulate(inst, make_policy("fcfs"))
    assert score(inst, on).prefix_hit_rate > 0.3
