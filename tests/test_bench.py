"""`slosched bench` pieces that need no server: the SLOs it sends, token counting, errors.
(tests/test_vllm_bench.py runs it against the real vLLM server.)"""

from __future__ import annotations

import json

import pytest

from engine_adapter.http_replay import ReplaySettings, _Counter, prompt_for, relative_slo
from engine_adapter.slo_args import KEY, parse_slo_args
from experiments.cli import main
from experiments.config import config_from_dict
from experiments.workloads import build_instance
from formulations.requests import RequestClass


@pytest.fixture(scope="module")
def instance():
    config = config_from_dict({"policies": ["fcfs"], "workload": {"limit": 40, "mix": {"latency": 0.3, "throughput": 0.3, "bulk": 0.4},
                                                                   "bulk": {"size_min": 3, "size_max": 3}}})
    return build_instance(config.workload, config.engine.build(), 0)


def test_sent_slos_parse_back_with_shifted_indices_and_relative_deadlines(instance):
    now = 5.0
    classes = set()
    for i, req in enumerate(instance.requests):
        xargs = relative_slo(instance, i, now, index_base=100)
        args = parse_slo_args(xargs, f"r{i}", now=50.0)  # the scheduler's clock reads 50 on arrival
        classes.add(req.cls)
        assert args.index == i + 100 and args.id == req.id and args.arrival == 50.0
        deadline = instance.deadline(req)
        if req.cls is RequestClass.LATENCY:
            assert (args.ttft_target, args.read_rate) == (req.ttft_target, req.read_rate)
        else:  # the same time left as on the replay clock, on the scheduler's clock
            assert args.deadline == pytest.approx(50.0 + max(deadline - now, 1e-3))
        if req.cls is RequestClass.BULK:
            assert args.group.id == f"{req.group}@100" and all(m >= 100 for m in args.group.members)
            assert all(p >= 100 for p in args.parents)
            assert [p - 100 for p in args.parents] == list(instance.table.parents[i])
    assert classes == set(RequestClass)
    assert json.loads(relative_slo(instance, 0, now, 0)[KEY])["index"] == 0


def test_token_counter_prefers_cumulative_usage_then_token_ids_then_text():
    counter = _Counter()
    assert counter.new_tokens({"choices": [{"text": "ab", "token_ids": [1, 2]}], "usage": {"completion_tokens": 2}}) == 2
    assert counter.new_tokens({"choices": [{"text": "c"}], "usage": {"completion_tokens": 5}}) == 3
    assert counter.new_tokens({"choices": [], "usage": {"completion_tokens": 5}}) == 0  # the final usage chunk
    plain = _Counter()
    assert plain.new_tokens({"choices": [{"token_ids": [4, 5, 6]}]}) == 3
    assert plain.new_tokens({"choices": [{"text": "x"}]}) == 1
    assert plain.new_tokens({"choices": [{"text": ""}]}) == 0


def test_prompts_are_deterministic_and_of_the_requested_length():
    tokens = ReplaySettings(url="u", model="m", vocab_size=50, seed=3)
    ids = prompt_for(tokens, 7, 30)
    assert ids == prompt_for(tokens, 7, 30) and len(ids) == 30 and all(10 <= t < 50 for t in ids)
    assert ids != prompt_for(tokens, 8, 30)
    assert len(prompt_for(ReplaySettings(url="u", model="m", prompt="text"), 7, 30).split()) == 30
    with pytest.raises(ValueError, match="prompt='words'"):
        ReplaySettings(url="u", model="m", prompt="words")


def test_no_server_is_a_one_line_error(capsys):
    code = main(["bench", "experiments/configs/serve_tiny.toml", "--url", "http://127.0.0.1:9/v1", "--limit", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot list the server's models" in err and "127.0.0.1:9" in err
