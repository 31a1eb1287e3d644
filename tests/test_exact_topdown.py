"""The top-down attainment search of the token-indexed CP-SAT backend (solvers/exact/solve.py):
probing "attainment >= ub" from the top must reach the same optimum as the MILPs, and each
probe it reports must be consistent with that optimum."""

from engine_adapter.simulator import simulate
from formulations.exact.generate import scale_instance
from formulations.metrics import score
from solvers.exact.solve import solve
from solvers.policies.registry import make_policy


def test_top_down_probes_match_milp_optimum_under_tight_kv():
    inst = scale_instance(0, 10, 50, kv_tightness=0.12)
    hint = simulate(inst, make_policy("edf"), record_iterations=True)
    res = solve(inst, "cpsat", time_limit=60, hint=hint, secondary=False)
    highs = solve(inst, "highs", time_limit=60, hint=hint, secondary=False)
    assert res.stats["model"] == "tokens"
    assert res.status == highs.status == "optimal"
    assert res.objective == highs.objective == res.bound
    assert res.objective < len(inst.requests)  # tight KV: some SLO is out of reach
    probes = res.stats["probes"]
    assert probes, "the top-down search ran no probe"
    targets = [p["target"] for p in probes]
    assert targets == sorted(targets, reverse=True)
    for p in probes:  # every target above the optimum was proven out of reach, none at or below it
        assert (p["outcome"] == "infeasible") == (p["target"] > res.objective)
    assert score(inst, res.schedule).slo_met == res.objective


def test_top_down_stops_at_the_hint_when_everything_above_is_infeasible():
    """When the probes prove ub down to the warm start's attainment, the warm start is optimal."""
    inst = scale_instance(3, 10, 40, kv_tightness=0.15)
    best = solve(inst, "highs", time_limit=60, secondary=False)
    res = solve(inst, "cpsat", time_limit=60, hint=best.assignment, secondary=False)
    assert res.status == "optimal" and res.objective == best.objective == res.bound
    assert all(p["outcome"] == "infeasible" for p in res.stats["probes"])
    targets = [p["target"] for p in res.stats["probes"]]
    if targets:  # one probe per value from the top down to just above the warm start
        assert targets == list(range(targets[0], best.objective, -1))
