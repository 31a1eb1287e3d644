"""T_alone and deadlines on hand-computed cases."""

from __future__ import annotations

import pytest

from formulations.deadlines import group_deadline, prefill_chunks, request_deadline, t_alone, t_alone_group
from formulations.engine_spec import EngineSpec
from formulations.latency_model import LatencyModel
from formulations.requests import Group, Request, RequestClass

LAT = LatencyModel(c0=0.01, c_prefill=0.001, c_decode=0.002, c_ctx=0.0001, c_prefill_ctx=0.0)


def spec(**kw) -> EngineSpec:
    return EngineSpec(kv_blocks=100, latency=LAT, block_size=4, token_budget=8, **kw)


def test_t_alone_hand_computed() -> None:
    # prompt 10 with budget 8: chunks 8 and 2 -> (0.01 + 0.008) + (0.01 + 0.002)
    # then 2 decode steps attending 11 and 12 tokens: 2*(0.01 + 0.002) + 0.0001*23
    assert prefill_chunks(spec(), 10) == [8, 2]
    expected = 0.018 + 0.012 + 2 * 0.012 + 0.0001 * 23
    assert t_alone(spec(), 10, 3) == pytest.approx(expected)


def test_t_alone_prefill_attention_term() -> None:
    lat = LatencyModel(c0=0.0, c_prefill=0.0, c_decode=0.0, c_ctx=0.0, c_prefill_ctx=1.0)
    s = EngineSpec(kv_blocks=100, latency=lat, block_size=4, token_budget=8)
    # chunk 8 from 0: 8*9/2 = 36 pairs; chunk 2 from 8: 2*8 + 3 = 19 pairs
    assert t_alone(s, 10, 1) == pytest.approx(55.0)


def test_t_alone_slotted() -> None:
    # 2 prefill slots + 4 decode slots
    assert t_alone(spec(slot_time=0.5), 10, 5) == pytest.approx(3.0)


def test_throughput_deadline() -> None:
    req = Request("a", RequestClass.THROUGHPUT, 2.0, 10, 3, slack_ratio=4.0)
    assert request_deadline(spec(), req) == pytest.approx(2.0 + 4.0 * t_alone(spec(), 10, 3))


def test_group_deadline_is_longest_dag_path() -> None:
    reqs = {r.id: r for r in (
        Request("a", RequestClass.BULK, 1.0, 4, 2, group="g"),
        Request("b", RequestClass.BULK, 1.0, 8, 5, group="g"),
        Request("c", RequestClass.BULK, 1.0, 2, 1, group="g"),
        Request("d", RequestClass.BULK, 1.0, 4, 2, group="g"),
    )}
    # a -> b -> d and a -> c -> d: the path through b is longer
    g = Group("g", ("a", "b", "c", "d"), 1.0, 2.0, edges=(("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")))
    ta, tb, tc, td = (t_alone(spec(), reqs[x].prompt_len, reqs[x].output_len) for x in "abcd")
    assert tb > tc
    assert t_alone_group(spec(), g, reqs) == pytest.approx(ta + tb + td)
    assert group_deadline(spec(), g, reqs) == pytest.approx(1.0 + 2.0 * (ta + tb + td))
