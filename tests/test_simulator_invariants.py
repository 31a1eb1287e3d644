"""Simulator invariants on random instances (hypothesis), and fast-forward == step-by-step.

Random instances mix the three classes, bulk groups with random DAGs, tight KV (forcing
preemption), both preemption modes and both timing modes; policies are the baselines, a fixed
random priority, and a random policy that also drops requests and preempts.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_adapter.simulator import simulate
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import LatencyModel
from formulations.online import EngineView, Plan, Policy
from formulations.requests import Group, Request, RequestClass
from solvers.policies.registry import make_policy

LATENCY = LatencyModel(c0=0.01, c_prefill=0.001, c_decode=0.002, c_ctx=0.0001, c_prefill_ctx=1e-6)


class StaticPriority(Policy):
    """Every live request, in a fixed random order of request indices (stable between events)."""

    name = "static"

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def reset(self, engine: EngineSpec) -> None:
        self.rank = np.random.default_rng(self.seed).permutation(1000)

    def decide(self, view: EngineView) -> Plan:
        return Plan(run=view.idx[np.argsort(self.rank[view.idx], kind="stable")])


class RandomPlans(Policy):
    """Random order each decision, a random subset of the waiting requests (resident ones all run,
    or a plan could legitimately stall on KV held by paused requests), occasional preemptions of
    a resident request and recheck times."""

    name = "random"

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def reset(self, engine: EngineSpec) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.preempts_left = 3

    def decide(self, view: EngineView) -> Plan:
        n = len(view)
        order = self.rng.permutation(n)
        keep = order[view.resident[order] | (self.rng.random(n) < 0.7)]
        if len(keep) == 0:
            keep = order[:1]
        preempt = np.empty(0, dtype=np.int64)
        if self.preempts_left and len(keep) > 1 and view.resident[keep[-1]] and self.rng.random() < 0.3:
            self.preempts_left -= 1
            preempt = view.idx[keep[-1:]]
            keep = keep[:-1]
        recheck = view.now + 0.05 if self.rng.random() < 0.3 else None
        return Plan(run=view.idx[keep], preempt=preempt, recheck_at=recheck)


@st.composite
def instances(draw, max_requests: int = 10) -> Instance:
    block_size = draw(st.sampled_from([1, 2, 4, 8]))
    kv_blocks = draw(st.integers(6, 40))
    slotted = draw(st.booleans())
    swap = draw(st.booleans())
    spec = EngineSpec(
        kv_blocks=kv_blocks, latency=LATENCY, block_size=block_size, token_budget=draw(st.integers(3, 48)),
        max_seqs=draw(st.integers(1, 5)), preemption="swap" if swap else "recompute",
        swap_time_per_block=draw(st.sampled_from([0.0, 0.003])), slot_time=0.1 if slotted else None,
    )
    capacity_tokens = kv_blocks * block_size
    n = draw(st.integers(1, max_requests))
    requests: list[Request] = []
    bulk: list[int] = []
    for i in range(n):
        prompt = draw(st.integers(1, max(1, min(40, capacity_tokens - 1))))
        output = draw(st.integers(1, max(1, min(20, capacity_tokens - prompt + 1))))
        cls = draw(st.sampled_from(list(RequestClass)))
        arrival = draw(st.integers(0, 30)) * 0.05
        if cls is RequestClass.LATENCY:
            req = Request(f"r{i}", cls, arrival, prompt, output, ttft_target=draw(st.sampled_from([0.05, 0.5, 2.0])),
                          read_rate=draw(st.sampled_from([5.0, 20.0, 100.0])))
        elif cls is RequestClass.THROUGHPUT:
            req = Request(f"r{i}", cls, arrival, prompt, output, slack_ratio=2.0)
        else:
            bulk.append(i)
            req = Request(f"r{i}", cls, arrival, prompt, output)
        requests.append(req)
    groups: list[Group] = []
    if bulk:
        n_groups = draw(st.integers(1, min(2, len(bulk))))
        for g in range(n_groups):
            members = bulk[g::n_groups]
            arrival = requests[members[0]].arrival
            ids = [f"r{m}" for m in members]
            edges = tuple((ids[a], ids[b]) for a in range(len(ids)) for b in range(a + 1, len(ids))
                          if draw(st.booleans()))
            for m in members:
                requests[m] = Request(f"r{m}", RequestClass.BULK, arrival, requests[m].prompt_len,
                                      requests[m].output_len, group=f"g{g}")
            groups.append(Group(f"g{g}", tuple(ids), arrival, slack_ratio=3.0, edges=edges))
    return Instance(spec, tuple(requests), tuple(groups))


POLICY_NAMES = ["fcfs", "edf", "sjf", "static", "random"]


def make(name: str, seed: int) -> Policy:
    if name == "static":
        return StaticPriority(seed)
    if name == "random":
        return RandomPlans(seed)
    return make_policy(name)


def check_invariants(instance: Instance, schedule) -> None:
    spec = instance.engine
    log = schedule.meta["iteration_log"]
    assert len(log["end"]) == schedule.iterations
    assert np.all(log["kv_used_blocks"] <= spec.kv_blocks)
    assert np.all(log["tokens"] <= spec.token_budget)
    assert np.all(log["seqs"] <= spec.max_seqs)
    assert np.all(log["seqs"] >= 1)
    assert np.all(log["end"] > log["start"])
    assert np.all(log["start"][1:] >= log["end"][:-1])
    if spec.slot_time is not None:
        slots = log["start"] / spec.slot_time
        assert np.allclose(slots, np.round(slots), atol=1e-9)
        assert np.allclose(log["end"] - log["start"], spec.slot_time)
    table = instance.table
    finish = {}
    deliveries = 0
    for i, (req, tl) in enumerate(zip(instance.requests, schedule.timelines, strict=True)):
        assert tl.request_id == req.id
        assert len(tl.token_times) == req.output_len
        assert tl.finish is not None and tl.finish == tl.token_times[-1]
        assert np.all(np.diff(tl.token_times) > 0)
        assert tl.release >= req.arrival
        assert tl.admissions and tl.admissions[0] >= tl.release
        assert tl.token_times[0] > tl.admissions[0]
        # preempted requests were admitted again and finished
        assert len(tl.admissions) == len(tl.preemptions) + 1
        assert all(a < p for a, p in zip(tl.admissions, tl.preemptions, strict=False))
        finish[i] = tl.finish
        deliveries += len(tl.token_times)
        parents = table.parents[i]
        if len(parents):
            last_parent = max(finish_of(schedule, p) for p in parents.tolist())
            assert tl.release == last_parent
            assert tl.admissions[0] >= last_parent
    # every scheduled request had been released before the iteration started, and every token
    # was delivered at the end of an iteration that ran its request
    ends = set(log["end"].tolist())
    for tl in schedule.timelines:
        assert set(tl.token_times.tolist()) <= ends
    for start, scheduled in zip(log["start"], log["scheduled"], strict=True):
        for i in scheduled.tolist():
            assert schedule.timelines[i].release <= start
    assert deliveries == int(table.output_len.sum())


def finish_of(schedule, i: int) -> float:
    return schedule.timelines[i].finish


@settings(max_examples=650, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance=instances(), policy=st.sampled_from(POLICY_NAMES), seed=st.integers(0, 10_000))
def test_invariants_hold(instance: Instance, policy: str, seed: int) -> None:
    schedule = simulate(instance, make(policy, seed), record_iterations=True)
    check_invariants(instance, schedule)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance=instances(), policy=st.sampled_from(["fcfs", "sjf", "static"]), seed=st.integers(0, 10_000))
def test_fast_forward_matches_step_by_step(instance: Instance, policy: str, seed: int) -> None:
    fast = simulate(instance, make(policy, seed), record_iterations=True)
    slow = simulate(instance, make(policy, seed), record_iterations=True, fast_forward=False)
    check_invariants(instance, slow)
    assert fast.iterations == slow.iterations
    for a, b in zip(fast.timelines, slow.timelines, strict=True):
        np.testing.assert_array_equal(a.token_times, b.token_times)
        assert a.admissions == b.admissions
        assert a.preemptions == b.preemptions
    for key in ("start", "end", "prefill_tokens", "decode_seqs", "kv_used_blocks"):
        np.testing.assert_array_equal(fast.meta["iteration_log"][key], slow.meta["iteration_log"][key])


def test_tight_kv_forces_preemption_in_both_modes() -> None:
    """The random instances above do reach preemption; here it is checked on purpose."""
    for mode in ("recompute", "swap"):
        spec = EngineSpec(kv_blocks=6, latency=LATENCY, block_size=2, token_budget=16, max_seqs=4, preemption=mode,
                          swap_time_per_block=0.001)
        reqs = tuple(Request(f"r{i}", RequestClass.THROUGHPUT, 0.0, 3, 8, slack_ratio=2.0) for i in range(3))
        inst = Instance(spec, reqs)
        schedule = simulate(inst, make_policy("fcfs"), record_iterations=True)
        check_invariants(inst, schedule)
        assert sum(len(tl.preemptions) for tl in schedule.timelines) > 0
