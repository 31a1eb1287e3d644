"""The window search: PlannedPolicy, one CP-SAT window, and the search against proven optima."""

from __future__ import annotations

import numpy as np
import pytest

from engine_adapter.simulator import simulate
from formulations.bounds.intervals import attainment_units
from formulations.bounds.windows import token_windows
from formulations.exact.generate import random_instance
from formulations.metrics import request_outcomes
from policy_views import make_view
from solvers.exact.solve import solve
from solvers.interrupt import StopToken
from solvers.policies.give_up import GiveUpPolicy
from solvers.policies.planned import PlannedPolicy
from solvers.policies.registry import make_policy
from solvers.search.window_model import Window, solve_window, usage_profile
from solvers.search.windows import Replayed, window_search


def replay(inst, policy) -> Replayed:
    schedule = simulate(inst, policy)
    return Replayed(schedule, np.array([o.slo_met for o in request_outcomes(inst, schedule)], dtype=bool))


def compact_instance(seed: int):
    """Small slotted instances whose token budget never binds (the window model's exact regime)."""
    return random_instance(seed, 7, prompt=(4, 16), output=(2, 6), arrival_slots=4, kv_tightness=0.4,
                           token_budget=4096, dag_group=3 if seed % 2 else 0)


def test_planned_policy_runs_requests_by_their_next_planned_token():
    times = [np.array([0.3, 0.9]), np.array([0.1, 0.2, 0.8]), np.array([0.5])]
    view = make_view([{"cls": 1, "pred": 2, "generated": 1}, {"cls": 1, "pred": 3, "generated": 2},
                      {"cls": 1, "pred": 1}])
    assert PlannedPolicy(times).decide(view).run.tolist() == [2, 1, 0]  # keys 0.9, 0.8, 0.5


def test_planned_policy_with_hold_pauses_requests_planned_later_and_frees_their_kv():
    times = [np.array([0.1, 0.5]), np.array([0.1])]
    view = make_view([{"cls": 1, "pred": 2, "generated": 1, "resident": True, "computed": 9}, {"cls": 1, "pred": 1}],
                     now=0.0)
    plan = PlannedPolicy(times, hold=0.1).decide(view)
    assert plan.run.tolist() == [1] and plan.preempt.tolist() == [0]
    assert plan.recheck_at == pytest.approx(0.4)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_window_search_lies_between_the_best_policy_and_the_optimum(seed):
    inst = compact_instance(seed)
    optimum = solve(inst, time_limit=30, secondary=False)
    assert optimum.status == "optimal"
    start = max((replay(inst, make_policy(name)) for name in ("fcfs", "edf", "sjf")), key=lambda r: r.met.sum())
    def follow(times, given):
        return replay(inst, GiveUpPolicy(PlannedPolicy(times, inst.engine.slot_time), given))
    found = window_search(inst, start, follow, time_limit=4, seed=seed, window_units=4, window_seconds=1)
    assert start.met.sum() <= found.slo_met == optimum.objective  # tiny: the windows reach the proven optimum
    assert found.slo_met == found.best.met.sum() == replay_count(inst, found.best)
    assert found.evaluations >= 1 or start.met.all()


def test_a_plan_the_engine_cannot_follow_is_skipped_and_the_start_kept():
    """evaluate returns None when the replay stalls the engine: the search logs it and goes on."""
    inst = compact_instance(1)
    start = replay(inst, make_policy("fcfs"))
    assert not start.met.all()  # there is something to search for
    found = window_search(inst, start, lambda times, given: None, time_limit=3, seed=0, window_units=4,
                          window_seconds=1)
    assert found.best is start and found.slo_met == found.start and found.improvements == 0
    assert found.evaluations >= 1 and all(w.get("replayed") == "stalled" for w in found.windows if "replayed" in w)


def replay_count(inst, replayed: Replayed) -> int:
    """The met count scored again from the kept schedule (the result is a replayed schedule)."""
    return sum(o.slo_met for o in request_outcomes(inst, replayed.schedule))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_window_over_the_whole_instance_never_beats_the_optimum(seed):
    """With every request free the window model restricts the compact model (runs of consecutive
    tokens, conservative QoE), so its optimum is at most the proven one."""
    inst = compact_instance(seed)
    optimum = solve(inst, time_limit=30, secondary=False)
    unit, weight = attainment_units(inst)
    everything = np.arange(len(inst.requests))
    incumbent = replay(inst, make_policy("edf"))
    tau = inst.engine.slot_time
    window = Window(0.0, tau, 60, everything)
    usage = usage_profile(inst, incumbent.schedule, np.empty(0, dtype=np.int64), window)
    assert not usage.any()
    met_units = np.ones(len(weight), dtype=bool)
    np.logical_and.at(met_units, unit, incumbent.met)
    plan = solve_window(inst, token_windows(inst), unit, weight, incumbent.schedule, met_units, window, usage,
                        10.0, StopToken())
    assert plan.status == "optimal"
    assert plan.met_weight <= optimum.objective
    served = np.zeros(len(inst.requests), dtype=bool)
    served[list(plan.token_times)] = True
    assert not np.intersect1d(plan.dropped, np.flatnonzero(served)).size
    for i, times in plan.token_times.items():
        assert np.all(np.diff(times) >= tau - 1e-9) and times[0] >= inst.requests[i].arrival + tau - 1e-9


def test_usage_profile_counts_the_fixed_requests_blocks():
    inst = compact_instance(0)
    run = replay(inst, make_policy("fcfs"))
    window = Window(0.0, inst.engine.slot_time, 30, np.empty(0, dtype=np.int64))
    usage = usage_profile(inst, run.schedule, np.arange(len(inst.requests)), window)
    assert usage[:, 0].max() <= inst.engine.kv_blocks
    delivered = sum(len(tl.token_times) for tl in run.schedule.timelines if tl.token_times[-1] <= 30 * window.tau)
    assert usage[:, 1].sum() >= delivered
