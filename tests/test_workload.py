"""Workload building: determinism, class mix, rate scaling, SLO draws, DAG shapes, arrival processes."""

from __future__ import annotations

from dataclasses import replace

import networkx as nx
import numpy as np
import pytest

from experiments.errors import ConfigError
from experiments.workloads.trace_loader import load_trace
from experiments.workloads import BulkSLO, ClassMix, Dist, LatencySLO, ThroughputSLO, WorkloadConfig, build_instance
from experiments.workloads.arrivals import burst_arrivals, gamma_arrivals, poisson_arrivals
from experiments.workloads.dags import chain, independent, map_reduce, shape_edges, tree_of_thought
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.request_columns import NumberedIds, RequestColumns
from formulations.requests import RequestClass

ENGINE = EngineSpec.from_profile("llama3-8b-h100", kv_blocks=2000)
TRACE = load_trace("azure-conv")
MIXED = WorkloadConfig(limit=200, mix=ClassMix(latency=0.5, throughput=0.3, bulk=0.2))


def build(config: WorkloadConfig, seed: int = 0, engine: EngineSpec = ENGINE):
    return build_instance(config, engine, seed, trace=TRACE)


def test_same_seed_same_instance_other_seed_other_instance():
    a, b, c = build(MIXED, 7), build(MIXED, 7), build(MIXED, 8)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict()["requests"] != c.to_dict()["requests"]


def test_meta_records_workload_config_and_seed():
    inst = build(MIXED, 3)
    assert inst.meta["seed"] == 3
    assert inst.meta["workload"]["limit"] == 200
    assert inst.meta["workload"]["mix"] == {"latency": 0.5, "throughput": 0.3, "bulk": 0.2}
    assert sorted(inst.meta["trace_lines"]) == list(range(2, 202))  # the first 200 rows, none dropped


def test_class_mix_gives_exact_counts_with_largest_remainder():
    inst = build(replace(MIXED, limit=101))
    counts = {c: sum(r.cls is c for r in inst.requests) for c in RequestClass}
    # 50.5 / 30.3 / 20.2 -> floors 50/30/20, the one left goes to the largest remainder (latency)
    assert counts == {RequestClass.LATENCY: 51, RequestClass.THROUGHPUT: 30, RequestClass.BULK: 20}


def test_each_class_gets_its_slo_parameters():
    inst = build(MIXED)
    for r in inst.requests:
        if r.cls is RequestClass.LATENCY:
            assert r.ttft_target == max(r.prompt_len / 5000, 1.0) and r.read_rate in (4.8, 3.3)
            assert r.slack_ratio is None and r.group is None
        elif r.cls is RequestClass.THROUGHPUT:
            assert 2.0 <= r.slack_ratio <= 10.0 and r.ttft_target is None
        else:
            assert r.group is not None and r.ttft_target is None


def test_limit_takes_the_first_rows_and_trace_arrivals_are_kept():
    inst = build(WorkloadConfig(limit=50))  # latency only: nothing is grouped
    assert [r.prompt_len for r in inst.requests] == TRACE.prompt_len[:50].tolist()
    assert [r.arrival for r in inst.requests] == TRACE.arrival[:50].tolist()
    with pytest.raises(ConfigError, match="limit=20000 but trace 'azure-conv' has only 19366"):
        build(WorkloadConfig(limit=20000))


@pytest.mark.parametrize("arrivals", ["trace", "poisson", "gamma", "bursts"])
def test_rate_scale_divides_every_arrival_time(arrivals):
    base = WorkloadConfig(limit=80, arrivals=arrivals, cv=2.0)
    one = np.array([r.arrival for r in build(base).requests])
    two = np.array([r.arrival for r in build(replace(base, rate_scale=2.5)).requests])
    assert np.allclose(two, one / 2.5) and one[-1] > 0


def test_synthetic_arrivals_default_to_the_traces_mean_rate():
    inst = build(WorkloadConfig(limit=2000, arrivals="poisson"))
    span = inst.requests[-1].arrival
    trace_rate = 1999 / TRACE.arrival[1999]
    assert 1999 / span == pytest.approx(trace_rate, rel=0.1)


@pytest.mark.parametrize("cv", [0.5, 1.0, 3.0])
def test_gamma_gaps_have_the_requested_mean_and_cv(cv):
    gaps = np.diff(gamma_arrivals(np.random.default_rng(1), 40001, rate=4.0, cv=cv))
    assert gaps.mean() == pytest.approx(0.25, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.08)


def test_poisson_gaps_are_exponential():
    gaps = np.diff(poisson_arrivals(np.random.default_rng(2), 40001, rate=2.0))
    assert gaps.mean() == pytest.approx(0.5, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)


def test_bursts_arrive_only_in_on_windows_at_the_mean_rate():
    times = burst_arrivals(np.random.default_rng(3), 20000, rate=5.0, on=2.0, off=6.0)
    assert np.all(np.diff(times) >= 0) and times[0] == 0.0
    assert np.all(np.mod(times, 8.0) < 2.0 + 1e-9)
    assert len(times) / times[-1] == pytest.approx(5.0, rel=0.05)


def test_read_rate_distributions():
    rng = np.random.default_rng(0)
    draws = Dist(kind="choice", values=(4.8, 3.3), probs=(0.25, 0.75)).sample(rng, 20000)
    assert set(np.unique(draws)) == {3.3, 4.8}
    assert (draws == 3.3).mean() == pytest.approx(0.75, abs=0.015)
    normal = Dist(kind="normal", mean=4.0, std=2.0, low=2.0, high=5.0).sample(rng, 20000)
    assert normal.min() == 2.0 and normal.max() == 5.0  # clipped, not dropped
    assert (normal == 2.0).mean() == pytest.approx(0.1587, abs=0.01)  # P(z < -1)
    assert np.all(Dist(value=3.0).sample(rng, 5) == 3.0)


def test_fixed_ttft_rule_and_custom_read_rate():
    latency = LatencySLO(ttft_rule="fixed", ttft=0.5, read_rate=Dist(kind="uniform", low=6.0, high=7.0))
    inst = build(WorkloadConfig(limit=30, latency=latency))
    assert all(r.ttft_target == 0.5 and 6.0 <= r.read_rate <= 7.0 for r in inst.requests)


def test_andes_ttft_rule_with_long_prompts():
    inst = build(WorkloadConfig(limit=3000, latency=LatencySLO(prefill_rate=2000.0)))
    long = [r for r in inst.requests if r.prompt_len > 2000]
    assert long and all(r.ttft_target == r.prompt_len / 2000.0 for r in long)


def edge_set(edges):
    return set(edges)


def test_dag_shapes_by_hand():
    assert independent(4) == []
    assert edge_set(chain(4)) == {(0, 1), (1, 2), (2, 3)}
    assert edge_set(map_reduce(5)) == {(0, 1), (0, 2), (0, 3), (1, 4), (2, 4), (3, 4)}
    assert edge_set(map_reduce(2)) == {(0, 1)}
    assert edge_set(tree_of_thought(7, 2)) == {(0, 1), (0, 2), (1, 3), (1, 4), (2, 5), (2, 6)}
    assert edge_set(tree_of_thought(5, 3)) == {(0, 1), (0, 2), (0, 3), (1, 4)}


@pytest.mark.parametrize("shape", ["independent", "chain", "map_reduce", "tree_of_thought"])
@pytest.mark.parametrize("k", [1, 2, 3, 6, 11])
def test_every_shape_is_a_dag_over_all_members(shape, k):
    graph = nx.DiGraph()
    graph.add_nodes_from(range(k))
    graph.add_edges_from(shape_edges(shape, k, branching=3))
    assert nx.is_directed_acyclic_graph(graph)
    assert all(a < b for a, b in graph.edges)  # position order is topological
    if shape != "independent" and k > 1:
        assert nx.is_weakly_connected(graph)
        roots = [v for v in graph if graph.in_degree(v) == 0]
        assert roots == [0]
    if shape == "map_reduce" and k >= 3:
        assert graph.out_degree(0) == k - 2 and graph.in_degree(k - 1) == k - 2


def test_bulk_groups_are_cut_from_consecutive_bulk_requests():
    bulk = BulkSLO(size_min=3, size_max=5, shapes={"chain": 1.0, "map_reduce": 2.0}, slack=Dist(value=4.0))
    config = WorkloadConfig(limit=300, mix=ClassMix(0.6, 0.0, 0.4), bulk=bulk)
    inst = build(config, 5)
    members = [m for g in inst.groups for m in g.members]
    assert sorted(members) == sorted(r.id for r in inst.requests if r.cls is RequestClass.BULK)  # none lost
    assert len(members) == 120
    sizes = [len(g.members) for g in inst.groups]
    assert all(3 <= s <= 5 for s in sizes[:-1]) and 1 <= sizes[-1] <= 5
    lines = inst.meta["trace_lines"]
    line_of = {r.id: lines[i] for i, r in enumerate(inst.requests)}
    bulk_lines = sorted(line_of[m] for m in members)
    for g in inst.groups:
        assert g.slack_ratio == 4.0
        assert all(inst.by_id[m].arrival == g.arrival for m in g.members)
        # members are the next consecutive bulk rows of the trace
        first = bulk_lines.index(line_of[g.members[0]])
        assert [line_of[m] for m in g.members] == bulk_lines[first:first + len(g.members)]
        k = len(g.members)
        shape = inst.meta["group_shapes"][g.id]
        assert shape in ("chain", "map_reduce")
        expected = k - 1 if shape == "chain" or k <= 2 else 2 * (k - 2)
        assert len(g.edges) == expected and nx.is_directed_acyclic_graph(g.dag)
    shapes = list(inst.meta["group_shapes"].values())
    assert shapes.count("map_reduce") > shapes.count("chain")  # weights 2:1 over ~30 groups


def test_requests_are_ordered_by_arrival_with_parents_first():
    inst = build(MIXED, 2)
    arrivals = [r.arrival for r in inst.requests]
    assert arrivals == sorted(arrivals)
    for g in inst.groups:
        for parent, child in g.edges:
            assert inst.index[parent] < inst.index[child]


def test_oversize_request_is_an_error_naming_its_line_or_is_clipped():
    tiny = EngineSpec.from_profile("llama3-8b-h100", kv_blocks=40)  # 640 tokens
    with pytest.raises(ConfigError, match=r"azure_2023_conv.csv: line 4: prompt\+output=934 tokens can never fit"):
        build(WorkloadConfig(limit=20), engine=tiny)
    inst = build(WorkloadConfig(limit=20, oversize="clip"), engine=tiny)
    assert inst.meta["clipped"]
    for r in inst.requests:
        assert r.prompt_len + r.output_len - 1 <= 640
        if r.id in inst.meta["clipped"]:
            assert r.prompt_len + r.output_len - 1 == 640
        else:
            line = inst.meta["trace_lines"][inst.index[r.id]]
            assert r.prompt_len == TRACE.prompt_len[line - 2]


@pytest.mark.parametrize("make, message", [
    (lambda: ClassMix(0.5, 0.3, 0.3), "must be non-negative and sum to 1"),
    (lambda: Dist(kind="gauss"), "kind='gauss'; valid: fixed, choice, uniform, normal"),
    (lambda: Dist(kind="choice", values=(1.0, 2.0), probs=(0.5,)), "probs=[0.5] must be 2"),
    (lambda: Dist(kind="uniform", low=3.0, high=2.0), "0 < low <= high"),
    (lambda: Dist(kind="normal", mean=4.0, std=1.0), "needs a clip bound low > 0"),
    (lambda: LatencySLO(ttft_rule="tempo"), "ttft_rule='tempo'; valid: andes, fixed"),
    (lambda: BulkSLO(shapes={"star": 1.0}), "unknown shape(s) ['star']; valid: independent"),
    (lambda: BulkSLO(size_min=4, size_max=2), "size_min <= size_max"),
    (lambda: WorkloadConfig(arrivals="uniform"), "arrivals='uniform'; valid: trace, poisson, gamma, bursts"),
    (lambda: WorkloadConfig(oversize="drop"), "oversize='drop'; valid: error, clip"),
    (lambda: WorkloadConfig(rate_scale=0), "rate_scale=0 must be > 0"),
    (lambda: ThroughputSLO(slack=Dist(value=-1.0)), "fixed needs value > 0"),
])
def test_bad_workload_values_are_named(make, message):
    with pytest.raises(ConfigError) as err:
        make()
    assert message in str(err.value)


def test_columns_hold_the_same_requests_and_table_as_request_objects():
    """A built workload keeps its requests as columns; the same requests as objects give an equal
    instance and the same request table, column by column."""
    inst = build(replace(MIXED, mix=ClassMix(latency=0.4, throughput=0.3, bulk=0.3)), 5)
    assert isinstance(inst.requests, RequestColumns)
    objects = Instance(inst.engine, tuple(inst.requests), inst.groups, inst.meta)
    assert objects == inst and inst.requests == objects.requests and inst.requests[-3:] == objects.requests[-3:]
    assert inst.requests[-1] == objects.requests[-1] and len({r.cls for r in inst.requests}) == 3
    for name in ("ids", "cls", "arrival", "prompt_len", "output_len", "ttft_target", "read_rate", "deadline", "group",
                 "after", "think_time"):
        np.testing.assert_array_equal(np.asarray(getattr(inst.table, name)), np.asarray(getattr(objects.table, name)))
    for ours, theirs in zip(inst.table.parents + inst.table.group_members,
                            objects.table.parents + objects.table.group_members, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(IndexError):
        inst.requests[len(inst.requests)]


def test_numbered_ids_read_and_map_back_like_a_list_and_a_dict():
    ids = NumberedIds("r", 12)
    listed = [f"r{k}" for k in range(12)]
    assert ids == listed and ids[-1] == "r11" and ids[2:5] == listed[2:5] and list(ids) == listed
    positions = ids.positions()
    assert dict(positions) == {rid: k for k, rid in enumerate(listed)} and len(positions) == 12
    for absent in ("r12", "r01", "r-1", "x1", "r", "r1.0", "r١"):
        assert absent not in positions and positions.get(absent) is None
    with pytest.raises(IndexError):
        ids[12]
