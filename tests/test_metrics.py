"""score() against a per-request brute force on a mixed simulated instance (with unfinished requests)."""

from __future__ import annotations

import numpy as np
import pytest

from engine_adapter.simulator import simulate
from formulations.metrics import request_outcomes, score, summarize
from formulations.qoe import qoe
from solvers.policies.registry import make_policy
from tests.test_simulator_reference import reference_instance


@pytest.fixture(scope="module")
def scored():
    instance = reference_instance(None, "recompute", n=120)
    schedule = simulate(instance, make_policy("fcfs"))
    for k in (3, 10, 11):  # unfinished: fewer tokens than asked (one with none at all)
        tl = schedule.timelines[k]
        tl.token_times = tl.token_times[: k % 2]
        tl.finish = None
    return instance, schedule


def test_score_equals_summary_of_outcomes(scored) -> None:
    instance, schedule = scored
    assert score(instance, schedule).to_dict() == summarize(request_outcomes(instance, schedule)).to_dict()


def test_metrics_match_brute_force(scored) -> None:
    instance, schedule = scored
    metrics = score(instance, schedule)
    done = [tl for tl in schedule.timelines if tl.finish is not None]
    tbt = np.concatenate([np.diff(tl.token_times) for tl in done])
    assert metrics.tbt.mean == tbt.mean() and metrics.tbt.p99 == np.percentile(tbt, 99)
    assert metrics.unfinished == 3
    lat = [(r, tl) for r, tl in zip(instance.requests, schedule.timelines, strict=True) if r.cls.value == "latency"]
    qoes = [qoe(tl.token_times, r.output_len, r.arrival, r.ttft_target, r.read_rate) for r, tl in lat]
    assert metrics.mean_qoe == np.mean(qoes)
