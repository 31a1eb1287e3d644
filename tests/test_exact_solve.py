"""The exact hindsight oracle: brute force, backend agreement, replay, hints, statuses."""

from dataclasses import replace

import numpy as np
import pytest

from brute_force_hindsight import brute_force_attainment
from engine_adapter.simulator import simulate
from formulations.exact.assignment import assignment_from_schedule, decode, model_values, play, to_schedule
from formulations.exact.generate import random_instance, scale_instance
from formulations.exact.hindsight import build_hindsight
from formulations.instance import Instance
from formulations.metrics import score
from formulations.online import PlanError
from formulations.requests import ValidationError
from solvers.exact.solve import solve
from solvers.policies.fcfs import FCFSPolicy
from solvers.policies.replay import ReplayPolicy


def tiny(seed: int, n: int, dag: int = 0, **kw):
    """Tiny and tight: chunked prefills (budget 5), 2-token blocks, KV at 35% of peak demand."""
    params = dict(prompt=(2, 6), output=(1, 3), arrival_slots=2, block_size=2, kv_tightness=0.35, token_budget=5,
                  max_seqs=3, dag_group=dag, slack=(1.0, 1.5), ttft_slots=(1, 2))
    params.update(kw)
    return random_instance(seed, n, **params)


def ungated(inst: Instance) -> Instance:
    """The instance on an engine without vLLM's admission gate: what the exact model describes."""
    return replace(inst, engine=inst.engine.with_(reserve_full_prompt=False, watermark=0.0))


def assert_replay_matches(inst, result):
    replayed = simulate(ungated(inst), ReplayPolicy(result.assignment))
    assert score(inst, replayed).slo_met == result.objective
    assert score(inst, result.schedule).slo_met == result.objective
    horizon_end = result.horizon * inst.engine.slot_time
    for mine, sim in zip(result.schedule.timelines, replayed.timelines, strict=True):
        ours = mine.token_times
        theirs = sim.token_times[sim.token_times <= horizon_end + 1e-9]
        np.testing.assert_allclose(theirs, ours, atol=1e-9)
        assert [t for t in sim.preemptions if t < horizon_end - 1e-9] == pytest.approx(mine.preemptions)


BRUTE_CASES = [(s, 3, 0) for s in range(12)] + [(s, 4, 2) for s in (0, 2, 3, 4, 5, 7, 8)]


@pytest.mark.parametrize(("seed", "n", "dag"), BRUTE_CASES)
def test_cpsat_matches_brute_force_and_replay(seed, n, dag):
    inst = tiny(seed, n, dag)
    res = solve(inst, "cpsat", time_limit=30, secondary=False)
    assert res.status == "optimal" and res.bound == res.objective
    # One slot beyond the model's horizon: checks that the horizon loses no schedule too.
    assert brute_force_attainment(inst, res.horizon + 1) == res.objective
    assert_replay_matches(inst, res)


COMPACT_CASES = [(s, 3, 0) for s in range(0, 12, 2)] + [(s, 4, 2) for s in (0, 1, 4)]


@pytest.mark.parametrize(("seed", "n", "dag"), COMPACT_CASES)
def test_compact_models_match_brute_force(seed, n, dag):
    """Budget 64 > kv_blocks * block_size: the compact model (and its token-indexed CP-SAT form)
    applies; its dominance rules are checked against the brute force over all engine schedules,
    and against the general model on the same instance."""
    inst = tiny(seed, n, dag, token_budget=64)
    tokens = solve(inst, "cpsat", time_limit=30, secondary=False)
    assert tokens.stats["model"] == "tokens" and tokens.status == "optimal"
    slots = solve(inst, "cpsat", time_limit=30, secondary=False, cpsat_formulation="slots")
    general = solve(inst, "cpsat", time_limit=30, secondary=False, model="general")
    assert slots.stats["model"] == "compact" and general.stats["model"] == "general"
    assert tokens.objective == slots.objective == general.objective
    assert brute_force_attainment(inst, general.horizon + 1) == tokens.objective
    assert_replay_matches(inst, tokens)


def test_compact_backends_agree_on_scaled_instance():
    inst = scale_instance(3, 10, 40, kv_tightness=0.15)
    results = {b: solve(inst, b, time_limit=60) for b in ("cpsat", "cbc", "highs")}
    assert {r.status for r in results.values()} == {"optimal"}
    assert len({r.objective for r in results.values()}) == 1
    assert results["cpsat"].objective < len(inst.requests)  # KV pressure makes some SLO unreachable
    proven = [r.secondary for r in results.values() if r.secondary_status == "optimal"]
    assert len(set(proven)) <= 1
    for res in results.values():
        assert_replay_matches(inst, res)


MIXED = [
    tiny(0, 5, dag=3, classes=("latency", "throughput")),  # fork DAG: root feeds two children
    tiny(4, 5, dag=2),
    tiny(7, 4, dag=0, kv_tightness=0.25),  # KV pressure: waiting or preemption needed
]


@pytest.mark.parametrize("inst", MIXED)
def test_backends_agree(inst):
    results = {b: solve(inst, b, time_limit=60) for b in ("cpsat", "cbc", "highs")}
    assert {r.status for r in results.values()} == {"optimal"}
    assert len({r.objective for r in results.values()}) == 1
    proven = [r.secondary for r in results.values() if r.secondary_status == "optimal"]
    assert len(set(proven)) <= 1
    for res in results.values():
        assert_replay_matches(inst, res)


def test_decoded_solution_is_a_model_point():
    inst = MIXED[0]
    res = solve(inst, "cpsat", time_limit=30)
    hm = build_hindsight(inst)
    played = play(inst, res.assignment, hm.horizon)
    assert played.feasible
    values = model_values(hm, played)
    assert hm.model.check(values) == []
    assert hm.attainment(values) == res.objective
    assert hm.unfinished_slots(values) == res.secondary
    assert decode(hm, values).run == res.assignment.run


def test_play_reproduces_simulator_run():
    """The assignment player used for hints agrees with the simulator on an fcfs run."""
    inst = tiny(3, 5, dag=2, kv_tightness=0.3)
    sched = simulate(inst, FCFSPolicy(), record_iterations=True)
    assignment = assignment_from_schedule(inst, sched)
    played = play(inst, assignment, assignment.horizon)
    assert played.feasible, played.problem
    mine = to_schedule(inst, played, inst.engine.slot_time)
    for a, b in zip(mine.timelines, sched.timelines, strict=True):
        np.testing.assert_allclose(a.token_times, b.token_times)
        assert a.preemptions == pytest.approx(b.preemptions)


def test_hint_from_heuristic_is_used_and_never_worse():
    inst = random_instance(5, 12, kv_tightness=0.3, token_budget=16)
    sched = simulate(inst, FCFSPolicy(), record_iterations=True)
    fcfs = score(inst, sched).slo_met
    res = solve(inst, "cpsat", time_limit=4, hint=sched, secondary=False)
    assert res.stats["hint_used"]
    assert res.objective >= fcfs


def test_infeasible_target_reports_infeasible():
    inst = tiny(9, 3)
    best = solve(inst, "cpsat", time_limit=20, secondary=False).objective
    assert best < 3
    for backend in ("cpsat", "cbc", "highs"):
        res = solve(inst, backend, time_limit=20, min_attainment=best + 1)
        assert res.status == "infeasible" and res.schedule is None and res.objective is None


def test_timeout_returns_best_and_bound():
    inst = random_instance(1, 30, kv_tightness=0.3, token_budget=24, output=(4, 12))
    res = solve(inst, "cpsat", time_limit=1.0, workers=1)
    assert res.status == "timeout"
    assert res.bound >= (res.objective or 0)
    assert res.seconds < 10
    if res.schedule is not None:
        assert score(inst, res.schedule).slo_met == res.objective


def test_swap_instances_are_rejected():
    inst = tiny(0, 3)
    swap = type(inst)(inst.engine.with_(preemption="swap"), inst.requests, inst.groups)
    with pytest.raises(ValidationError, match="recompute"):
        solve(swap, "cpsat")


def test_latency_mode_is_rejected():
    inst = tiny(0, 3)
    free = type(inst)(inst.engine.with_(slot_time=None), inst.requests, inst.groups)
    with pytest.raises(ValidationError, match="slot_time"):
        solve(free, "cpsat")


def test_replay_refuses_an_engine_with_the_admission_gate():
    inst = tiny(0, 3)
    res = solve(inst, "cpsat", time_limit=30, secondary=False)
    assert inst.engine.reserve_full_prompt  # vLLM's default
    with pytest.raises(PlanError, match="admission gate"):
        simulate(inst, ReplayPolicy(res.assignment))
    assert score(inst, simulate(ungated(inst), ReplayPolicy(res.assignment))).slo_met == res.objective


def test_shared_content_with_prefix_caching_is_refused_in_one_line():
    inst = random_instance(3, 3)
    first = replace(inst.requests[0], content_ids=(1,), content_block=inst.engine.block_size)
    shared = Instance(inst.engine, (first, *inst.requests[1:]), inst.groups)
    with pytest.raises(ValidationError, match=f"request {first.id!r}: content_ids with engine.enable_prefix_caching"):
        solve(shared, time_limit=5)
    uncached = Instance(inst.engine.with_(enable_prefix_caching=False), shared.requests, inst.groups)
    assert solve(uncached, time_limit=5).status in ("optimal", "feasible")
