"""engine_adapter/fidelity.py: per-request TTFT/TBT/JCT relative errors between two schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine_adapter.fidelity import fidelity_cells, per_request_times, timed_fidelity
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import load_profile
from formulations.requests import Request, RequestClass
from formulations.schedule import RequestTimeline, Schedule

ENGINE = EngineSpec(kv_blocks=100, latency=load_profile("llama3-8b-h100").latency, block_size=16, token_budget=512,
                    max_seqs=8)


def instance(n: int) -> Instance:
    return Instance(ENGINE, tuple(Request(id=f"r{i}", cls=RequestClass.THROUGHPUT, arrival=float(i), prompt_len=10,
                                          output_len=3, slack_ratio=5.0) for i in range(n)))


def schedule(token_times: list[list[float]], finished: bool = True) -> Schedule:
    return Schedule([RequestTimeline(f"r{i}", float(i), np.array(t), finish=t[-1] if finished and t else None)
                     for i, t in enumerate(token_times)], iterations=1)


def test_times_per_request():
    times = per_request_times(instance(2), schedule([[1.5, 2.0, 3.5], [1.25, 2.25, 3.25]]))
    np.testing.assert_allclose(times["ttft"], [1.5, 0.25])
    np.testing.assert_allclose(times["jct"], [3.5, 2.25])
    np.testing.assert_allclose(times["tbt"], [1.0, 1.0])


def test_relative_errors_against_hand_worked_values():
    inst = instance(3)
    real = schedule([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [3.0, 4.0, 5.0]])  # ttft 1, jct 3, tbt 1 each
    # request 0 exact; request 1 everything 10% late at the end; request 2 first token 50% late
    sim = schedule([[1.0, 2.0, 3.0], [2.1, 3.1, 4.3], [3.5, 4.25, 5.0]])
    f = timed_fidelity(inst, real, sim)
    assert f["ttft_median"] == pytest.approx(0.1) and f["ttft_p90"] == pytest.approx(0.1 + 0.8 * 0.4)
    assert f["jct_median"] == 0.0 and f["jct_p90"] == pytest.approx(0.08)  # errors 0, 0.1, 0
    assert f["tbt_median"] == pytest.approx(0.1)  # errors 0, 0.1, 0.25
    assert f["ttft_bias"] == pytest.approx(0.1) and f["jct_bias"] == 0.0
    assert f["ttft_scored"] == f["jct_scored"] == 3 and f["unfinished"] == 0
    assert fidelity_cells(f)[:2] == ("10.0%", "42.0%")


def test_unfinished_and_single_token_requests_are_counted_not_scored():
    inst = instance(2)
    real = schedule([[1.0, 2.0], [1.5]])
    sim = Schedule([RequestTimeline("r0", 0.0, np.array([1.0, 2.0]), finish=2.0),
                    RequestTimeline("r1", 1.0, np.array([]), finish=None)], iterations=1)
    f = timed_fidelity(inst, real, sim)
    assert f["unfinished"] == 1 and f["jct_scored"] == 1 and f["tbt_scored"] == 1
    assert f["jct_median"] == 0.0
    empty = timed_fidelity(instance(1), schedule([[1.0]]), schedule([[1.0]]))
    assert empty["tbt_scored"] == 0 and math.isnan(empty["tbt_median"])


def test_bias_is_signed():
    inst = instance(2)
    real = schedule([[1.0, 2.0, 4.0], [2.0, 3.0, 5.0]])  # jct 4 and 4
    f = timed_fidelity(inst, real, schedule([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]]))  # both 1 s early: -25%
    assert f["jct_bias"] == pytest.approx(-0.25) and f["jct_median"] == pytest.approx(0.25)
