"""SLO parameters travelling in extra_args: what the runner writes, the scheduler reads back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine_adapter.slo_args import parse_slo_args, slo_extra_args
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.requests import Group, Request, RequestClass, ValidationError


def instance() -> Instance:
    reqs = (
        Request(id="chat", cls=RequestClass.LATENCY, arrival=1.0, prompt_len=10, output_len=5, ttft_target=0.5, read_rate=20.0),
        Request(id="job", cls=RequestClass.THROUGHPUT, arrival=2.0, prompt_len=30, output_len=8, slack_ratio=3.0),
        Request(id="m", cls=RequestClass.BULK, arrival=0.0, prompt_len=7, output_len=4, group="g"),
        Request(id="r", cls=RequestClass.BULK, arrival=0.0, prompt_len=9, output_len=6, group="g"),
    )
    groups = (Group(id="g", members=("m", "r"), arrival=0.0, slack_ratio=2.0, edges=(("m", "r"),)),)
    return Instance(EngineSpec.from_profile("llama3-8b-h100"), reqs, groups)


def test_round_trip_keeps_every_slo_field():
    inst = instance()
    table = inst.table
    got = [parse_slo_args(slo_extra_args(inst, i, arrival=float(table.arrival[i]), release=5.0,
                                         pred=[3.0, 4.0], levels=[0.5, 0.9]), f"vllm-{i}", now=99.0)
           for i in range(4)]
    chat, job, m, r = got
    assert (chat.index, chat.id, chat.cls, chat.ttft_target, chat.read_rate) == (0, "chat", 0, 0.5, 20.0)
    assert math.isnan(chat.deadline) and chat.arrival == 1.0 and chat.release == 5.0
    assert job.cls == 1 and job.deadline == pytest.approx(table.deadline[1]) and math.isnan(job.ttft_target)
    assert m.group.members == (2, 3) and m.group.parents == ((), (2,)) and m.group.prompt_len == (7, 9)
    assert m.group.deadline == pytest.approx(inst.group_deadlines["g"]) and r.parents == (2,)
    np.testing.assert_array_equal(r.pred, [3.0, 4.0])
    assert r.levels == (0.5, 0.9)


def test_unmanaged_request_is_throughput_without_deadline_and_stamped_now():
    a = parse_slo_args({}, "plain", now=4.0)
    assert (a.index, a.cls, a.arrival, a.deadline) == (None, 1, 4.0, math.inf)


def test_relative_deadline_for_http_clients_as_json_string():
    a = parse_slo_args({"slosched": '{"class": "throughput", "deadline_in": 3.0}'}, "x", now=10.0)
    assert a.arrival == 10.0 and a.deadline == 13.0
    with pytest.raises(ValidationError, match="not JSON"):
        parse_slo_args({"slosched": "{class"}, "x", now=0.0)


@pytest.mark.parametrize("args, message", [
    ({"class": "gold"}, "class='gold'"),
    ({"class": "latency", "ttft_target": 1.0}, "read_rate"),
    ({"class": "throughput"}, "deadline"),
    ({"class": "throughput", "deadline": 1, "deadline_in": 1}, "not both"),
    ({"class": "throughput", "deadline": 1, "colour": 1}, "colour"),
    ({"class": "bulk"}, "group"),
    ({"class": "throughput", "deadline": 1, "pred": [1, 2], "levels": [0.5]}, "pred"),
    ({"class": "throughput", "deadline": 1, "index": -1}, "index"),
    ({"class": "throughput", "deadline": 1, "pred": [3]}, "go together"),
    ({"class": "throughput", "deadline": 1, "pred": ["a"], "levels": [0.5]}, r"pred='a' must be a finite number"),
    ({"class": "throughput", "deadline": 1, "pred": {"0.5": 3}, "levels": [0.5]}, "pred=.* non-empty list"),
    ({"class": "throughput", "deadline": 1, "pred": [3], "levels": 0.5}, "levels=0.5 must be a non-empty list"),
    ({"class": "throughput", "deadline": 1, "pred": [], "levels": []}, "levels=.* non-empty list"),
    ({"class": "throughput", "deadline": 1, "pred": [3, 4], "levels": [0.9, 0.5]}, "strictly increasing"),
    ({"class": "throughput", "deadline": 1, "pred": [3, 4], "levels": [0.5, 1.0]}, r"each in \(0, 1\)"),
    ({"class": "throughput", "deadline": 1, "pred": [5, 4], "levels": [0.5, 0.9]}, "non-decreasing"),
    ({"class": "throughput", "deadline": 1, "pred": [0.5, 4], "levels": [0.5, 0.9]}, ">= 1"),
    ({"class": "throughput", "deadline": 1, "pred": [3, float("nan")], "levels": [0.5, 0.9]}, "finite"),
])
def test_bad_args_name_the_field(args, message):
    with pytest.raises(ValidationError, match=message):
        parse_slo_args({"slosched": args}, "req-7", now=0.0)
