"""Instance JSON round-trip and validation errors that name the request/group and field."""

from __future__ import annotations

import pytest

from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import LatencyModel
from formulations.requests import Group, Request, RequestClass, ValidationError

LAT = LatencyModel(c0=0.01, c_prefill=0.001, c_decode=0.002, c_ctx=0.0001)
SPEC = EngineSpec(kv_blocks=10, latency=LAT, block_size=4)


def lat(rid: str, **kw) -> Request:
    base = dict(cls=RequestClass.LATENCY, arrival=0.0, prompt_len=4, output_len=3, ttft_target=1.0, read_rate=5.0)
    base.update(kw)
    return Request(rid, **base)


def sample() -> Instance:
    reqs = (
        lat("a"),
        Request("b", RequestClass.THROUGHPUT, 0.5, 6, 2, slack_ratio=3.0),
        Request("c", RequestClass.BULK, 1.0, 2, 2, group="g"),
        Request("d", RequestClass.BULK, 1.0, 3, 4, group="g"),
    )
    return Instance(SPEC, reqs, (Group("g", ("c", "d"), 1.0, 2.0, edges=(("c", "d"),)),), meta={"seed": 3})


def test_json_round_trip(tmp_path) -> None:
    inst = sample()
    path = tmp_path / "inst.json"
    inst.to_json(path)
    back = Instance.from_json(path)
    assert back == inst
    assert back.to_dict() == inst.to_dict()
    assert back.table.parents[3].tolist() == [2]


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: Instance(SPEC, (lat("x", prompt_len=-1),)), ["'x'", "prompt_len=-1"]),
        (lambda: Instance(SPEC, (lat("x", output_len=0),)), ["'x'", "output_len=0"]),
        (lambda: Instance(SPEC, (lat("x", arrival=-2.0),)), ["'x'", "arrival=-2.0"]),
        (lambda: Instance(SPEC, (lat("x", prompt_len=30, output_len=20),)), ["'x'", "prompt_len+output_len", "never fit"]),
        (lambda: Instance(SPEC, (lat("x"), lat("x"))), ["'x'", "duplicated"]),
        (lambda: Instance(SPEC, (lat("x", ttft_target=None),)), ["'x'", "ttft_target"]),
        (lambda: Instance(SPEC, (lat("x", read_rate=0.0),)), ["'x'", "read_rate"]),
        (lambda: Instance(SPEC, (Request("x", RequestClass.THROUGHPUT, 0.0, 3, 3),)), ["'x'", "slack_ratio"]),
        (lambda: Instance(SPEC, (Request("x", RequestClass.BULK, 0.0, 3, 3),)), ["'x'", "group"]),
        (lambda: Instance(SPEC, (Request("x", RequestClass.BULK, 0.0, 3, 3, group="nope"),)), ["'x'", "group='nope'"]),
        (lambda: Instance(SPEC, (Request("c", RequestClass.BULK, 0.0, 3, 3, group="g"),),
                          (Group("g", ("c",), 0.0, 2.0, edges=(("c", "zz"),)),)), ["'g'", "'zz'", "dangling"]),
        (lambda: Instance(SPEC, (Request("c", RequestClass.BULK, 0.0, 3, 3, group="g"),
                                 Request("e", RequestClass.BULK, 0.0, 3, 3, group="g")),
                          (Group("g", ("c", "e"), 0.0, 2.0, edges=(("c", "e"), ("e", "c"))),)), ["'g'", "cycle"]),
    ],
)
def test_validation_errors_name_request_and_field(build, words) -> None:
    with pytest.raises(ValidationError) as err:
        build()
    for w in words:
        assert w in str(err.value)


def test_unknown_class_in_json() -> None:
    data = sample().to_dict()
    data["requests"][1]["class"] = "interactive"
    with pytest.raises(ValidationError, match=r"request 'b': class='interactive'; valid: latency, throughput, bulk"):
        Instance.from_dict(data)


def test_missing_field_in_json() -> None:
    data = sample().to_dict()
    del data["requests"][0]["output_len"]
    with pytest.raises(ValidationError, match=r"request 'a': missing field 'output_len'"):
        Instance.from_dict(data)
