"""Realizing a workload on an engine run, and swapping the engine model with deadlines kept."""

from __future__ import annotations

import numpy as np

from engine_adapter.realized import realize, with_engine
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import LatencyModel
from formulations.requests import Group, Request, RequestClass


def instance():
    spec = EngineSpec.from_profile("llama3-8b-h100")
    reqs = (
        Request(id="c", cls=RequestClass.LATENCY, arrival=2.0, prompt_len=10, output_len=5, ttft_target=1.0, read_rate=5.0),
        Request(id="t", cls=RequestClass.THROUGHPUT, arrival=4.0, prompt_len=300, output_len=80, slack_ratio=3.0),
        Request(id="a", cls=RequestClass.BULK, arrival=1.0, prompt_len=50, output_len=20, group="g"),
        Request(id="b", cls=RequestClass.BULK, arrival=1.0, prompt_len=70, output_len=30, group="g"),
    )
    return Instance(spec, reqs, (Group(id="g", members=("a", "b"), arrival=1.0, slack_ratio=4.0, edges=(("a", "b"),)),))


def deadlines(inst):
    return np.array([np.nan if d is None else d for d in map(inst.deadline, inst.requests)])


def test_realize_scales_arrivals_and_keeps_the_rest():
    inst = instance()
    r = realize(inst, inst.engine.with_(kv_blocks=100), time_scale=0.5)
    assert [q.arrival for q in r.requests] == [1.0, 2.0, 0.5, 0.5] and r.groups[0].arrival == 0.5
    assert r.engine.kv_blocks == 100 and r.meta["time_scale"] == 0.5
    assert [q.output_len for q in r.requests] == [q.output_len for q in inst.requests]


def test_with_engine_keeps_every_absolute_deadline():
    inst = instance()
    slow = inst.engine.with_(latency=LatencyModel(c0=0.05, c_prefill=1e-4, c_decode=1e-3, c_ctx=1e-7))
    for engine in (slow, inst.engine.with_(slot_time=0.02)):
        moved = with_engine(inst, engine)
        assert moved.engine == engine
        np.testing.assert_allclose(deadlines(moved), deadlines(inst))
    assert with_engine(inst, slow).requests[1].slack_ratio < 3.0  # a slower engine: less slack for the same deadline
