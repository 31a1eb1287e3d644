"""Plan.reject in the simulator and in scoring: rejected requests finish at once, unserved."""

import json

import numpy as np
import pytest

from engine_adapter.simulator import simulate
from formulations.instance import Instance
from formulations.metrics import request_outcomes, score
from formulations.online import EngineView, Plan, PlanError, Policy
from formulations.requests import Group, Request, RequestClass
from policy_views import SLOTTED


class RejectAt(Policy):
    """Runs everything by index; rejects `target` at time `at` (asking to be asked then)."""

    name = "reject-at"

    def __init__(self, target: int, at: float = 0.0, also_run: bool = False) -> None:
        self.target, self.at, self.also_run = target, at, also_run

    def decide(self, view: EngineView) -> Plan:
        order = view.idx[np.argsort(view.idx)]
        if self.target in view.idx and view.now >= self.at - 1e-9:
            run = order if self.also_run else order[order != self.target]
            return Plan(run=run, reject=np.array([self.target]))
        return Plan(run=order, recheck_at=self.at if view.now < self.at else None)


def thr(rid: str, arrival: float = 0.0, output: int = 6) -> Request:
    return Request(id=rid, cls=RequestClass.THROUGHPUT, arrival=arrival, prompt_len=8, output_len=output, slack_ratio=3.0)


def test_rejected_request_stops_at_once_frees_its_blocks_and_is_scored_apart():
    engine = SLOTTED.with_(kv_blocks=6, max_seqs=2)  # two requests of 3 blocks each fill the cache
    inst = Instance(engine, (thr("a"), thr("b"), thr("c")))
    schedule = simulate(inst, RejectAt(target=1, at=0.2), record_iterations=True)
    a, b, c = schedule.timelines
    assert b.finish is None and b.rejected == pytest.approx(0.2) and len(b.token_times) == 2
    # c was waiting for b's seat and blocks: it starts right away instead of after b would have finished
    assert c.admissions[0] == pytest.approx(b.rejected)
    metrics = score(inst, schedule)
    assert (metrics.rejected, metrics.unfinished, metrics.slo_met) == (1, 0, 2)
    assert metrics.time_to_reject.mean == pytest.approx(0.2)  # arrival 0, rejected at 0.2 s


def test_served_late_is_counted_apart_from_rejected():
    engine = SLOTTED.with_(max_seqs=1)
    requests = (thr("a", output=30), Request(id="b", cls=RequestClass.THROUGHPUT, arrival=0.0, prompt_len=8,
                                             output_len=5, slack_ratio=1.0))
    metrics = score(Instance(engine, requests), simulate(Instance(engine, requests), RejectAt(target=9)))
    assert (metrics.served_late, metrics.rejected) == (1, 0)  # b waits for a's 30 tokens: late, not rejected


def test_rejecting_a_bulk_member_rejects_its_descendants():
    group = Group(id="g", members=("p", "q"), arrival=0.0, slack_ratio=3.0, edges=(("p", "q"),))
    requests = (Request(id="p", cls=RequestClass.BULK, arrival=0.0, prompt_len=8, output_len=4, group="g"),
                Request(id="q", cls=RequestClass.BULK, arrival=0.0, prompt_len=8, output_len=4, group="g"),
                thr("t"))
    inst = Instance(SLOTTED, requests, (group,))
    schedule = simulate(inst, RejectAt(target=0, at=0.1))
    p, q, t = schedule.timelines
    assert p.rejected == q.rejected == pytest.approx(0.1)
    assert q.token_times.size == 0 and t.finish is not None
    assert score(inst, schedule).rejected == 2
    # the descendant was never released: its outcome says so with None, and stays valid JSON
    outcomes = request_outcomes(inst, schedule)
    assert outcomes[1].release is None and outcomes[0].release == 0.0
    json.dumps([o.to_dict() for o in outcomes], allow_nan=False)


def test_a_request_both_run_and_rejected_is_a_plan_error():
    inst = Instance(SLOTTED, (thr("a"), thr("b")))
    with pytest.raises(PlanError, match="reject"):
        simulate(inst, RejectAt(target=1, also_run=True))
