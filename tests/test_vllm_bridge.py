"""The vLLM bridge against a real (tiny, random-weight) vLLM engine on CPU.

One in-process engine with a small KV pool (12 blocks of 32 tokens) serves every test; the
scheduler is reconfigured between them. Skipped only when vLLM is missing outside CI: in CI
(`CI` set) a missing vLLM is an error, so the tests can never silently stop running.
"""

from __future__ import annotations


import numpy as np
import pytest

from vllm_required import require_vllm  # noqa: E402

require_vllm()

from engine_adapter.bridge_config import BridgeConfig  # noqa: E402
from engine_adapter.simulator import simulate  # noqa: E402
from engine_adapter.realized import realize  # noqa: E402
from engine_adapter.vllm_runner import VllmEngine, VllmSettings, replay  # noqa: E402
from formulations.instance import Instance  # noqa: E402
from formulations.metrics import score  # noqa: E402
from formulations.online import EngineView, Plan, Policy  # noqa: E402
from formulations.requests import Group, Request, RequestClass  # noqa: E402
from solvers.policies.registry import make_policy  # noqa: E402

TAU = 0.01
SETTINGS = VllmSettings(kv_blocks=12, block_size=32, max_num_seqs=4, max_num_batched_tokens=128, max_model_len=384)


@pytest.fixture(scope="module")
def engine() -> VllmEngine:
    return VllmEngine(SETTINGS, BridgeConfig(policy="fcfs", slot_time=TAU))


def run(engine: VllmEngine, requests, groups=(), policy: Policy | None = None, slot_time: float | None = TAU):
    engine.configure(BridgeConfig(policy="fcfs", slot_time=slot_time), policy)
    instance = realize(Instance(engine.spec, tuple(requests), tuple(groups)), engine.spec)
    result = replay(engine, instance)
    meta = result.schedule.meta
    assert meta["plan_deviations"] == 0, "vLLM ran a different batch than the plan"
    assert meta["engine_preemptions"] == 0, "vLLM preempted on its own"
    return instance, result


def assert_exact_lengths(instance, result) -> None:
    """(c) every request finishes with exactly max_tokens tokens, by our clock and by vLLM's output."""
    for req, tl in zip(instance.requests, result.schedule.timelines, strict=True):
        assert len(tl.token_times) == req.output_len, req.id
        assert tl.finish is not None and tl.finish == tl.token_times[-1]
        assert result.stats["output_tokens"][req.id] == req.output_len, req.id


def completion_order(schedule) -> list[str]:
    done = sorted(schedule.timelines, key=lambda t: (t.finish, t.request_id))
    return [t.request_id for t in done]


def thr(rid: str, arrival: float, prompt: int, output: int) -> Request:
    return Request(id=rid, cls=RequestClass.THROUGHPUT, arrival=arrival, prompt_len=prompt, output_len=output,
                   slack_ratio=3.0)


def lat(rid: str, arrival: float, prompt: int, output: int) -> Request:
    return Request(id=rid, cls=RequestClass.LATENCY, arrival=arrival, prompt_len=prompt, output_len=output,
                   ttft_target=0.05, read_rate=50.0)


class PreferClass(Policy):
    """Requests of one class first, then by arrival: the smallest policy that is not FCFS."""

    name = "prefer-class"

    def __init__(self, code: int) -> None:
        self.code = code

    def decide(self, view: EngineView) -> Plan:
        return Plan(run=view.idx[np.lexsort((view.idx, view.arrival, view.cls != self.code))])


class PreemptOnce(Policy):
    """FCFS by index, except that it evicts `target` once, after its `after`-th token. Until then
    it asks to be asked again at the next step (recheck_at now): tokens of a steady decode batch
    are no event."""

    name = "preempt-once"

    def __init__(self, target: int, after: int) -> None:
        self.target, self.after = target, after
        self.asked = 0

    def decide(self, view: EngineView) -> Plan:
        order = view.idx[np.argsort(view.idx)]
        k = np.flatnonzero(view.idx == self.target)
        if not self.asked and len(k) and view.resident[k[0]] and view.generated[k[0]] >= self.after:
            self.asked += 1
            return Plan(run=order[order != self.target], preempt=np.array([self.target]))
        return Plan(run=order, recheck_at=None if self.asked else view.now)


def test_a_policy_preferring_a_class_changes_completion_order(engine):
    requests = [thr(f"t{i}", 0.0, 40, 30) for i in range(6)] + [lat(f"l{i}", 0.0, 40, 30) for i in range(4)]
    _, fcfs = run(engine, requests)
    inst, prefer = run(engine, requests, policy=PreferClass(RequestClass.LATENCY.code))
    # 4 seats (max_num_seqs): FCFS seats the throughput requests listed first, the policy the latency ones
    assert set(completion_order(fcfs.schedule)[:4]) == {"t0", "t1", "t2", "t3"}
    assert set(completion_order(prefer.schedule)[:4]) == {"l0", "l1", "l2", "l3"}
    assert_exact_lengths(inst, prefer)
    latency_qoe = score(inst, prefer.schedule).mean_qoe
    assert latency_qoe > score(inst, fcfs.schedule).mean_qoe


def test_b_preemption_asked_by_the_policy_happens(engine):
    requests = [thr(f"r{i}", 0.0, 50, 40) for i in range(3)]
    policy = PreemptOnce(target=1, after=5)
    inst, result = run(engine, requests, policy=policy)
    assert policy.asked == 1
    counts = [len(t.preemptions) for t in result.schedule.timelines]
    assert counts == [0, 1, 0]
    assert [result.schedule.meta["vllm_preemptions"][i] for i in range(3)] == counts  # vLLM's own counter
    victim = result.schedule.timelines[1]
    # it held KV, lost it after its 5th token, came back (recomputing prompt + 5 tokens) and went on
    assert len(victim.admissions) == 2 and victim.admissions[0] < victim.preemptions[0] < victim.admissions[1]
    assert np.sum(victim.token_times <= victim.preemptions[0]) == 5
    assert_exact_lengths(inst, result)


def mixed_workload():
    """Prompts longer than the token budget (chunked prefill), a KV pool that forces preemptions,
    staggered arrivals and a bulk DAG (a, b -> c)."""
    rng = np.random.default_rng(7)
    requests = [thr(f"r{i}", float(rng.uniform(0, 0.3)), int(rng.integers(30, 200)), int(rng.integers(10, 90)))
                for i in range(10)]
    for rid, prompt, out in (("a", 60, 20), ("b", 90, 15), ("c", 40, 25)):
        requests.append(Request(id=rid, cls=RequestClass.BULK, arrival=0.05, prompt_len=prompt, output_len=out,
                                group="g"))
    groups = [Group(id="g", members=("a", "b", "c"), arrival=0.05, slack_ratio=4.0, edges=(("a", "c"), ("b", "c")))]
    return requests, groups


def test_d_fcfs_in_vllm_matches_the_simulator_in_slotted_mode(engine):
    requests, groups = mixed_workload()
    inst, result = run(engine, requests, groups)
    sim = simulate(inst, make_policy("fcfs"))
    assert completion_order(result.schedule) == completion_order(sim)
    for mine, theirs in zip(result.schedule.timelines, sim.timelines, strict=True):
        np.testing.assert_allclose(mine.token_times, theirs.token_times, err_msg=mine.request_id)
        assert len(mine.preemptions) == len(theirs.preemptions), mine.request_id
        assert mine.release == pytest.approx(theirs.release), mine.request_id
    assert sum(len(t.preemptions) for t in sim.timelines) > 0, "the workload should exercise KV preemption"
    counts = {i: len(t.preemptions) for i, t in enumerate(result.schedule.timelines)}
    assert result.schedule.meta["vllm_preemptions"] == counts
    assert result.schedule.iterations == sim.iterations
    assert_exact_lengths(inst, result)
    c = inst.index["c"]
    assert result.schedule.timelines[c].admissions[0] >= max(result.schedule.timelines[inst.index[p]].finish
                                                             for p in ("a", "b"))


def test_wall_clock_run_is_scored_like_the_simulator(engine):
    requests = [thr(f"r{i}", 0.02 * i, 40 + 10 * i, 20) for i in range(6)]
    inst, result = run(engine, requests, slot_time=None)
    log = result.schedule.meta["iteration_log"]
    assert len(log["start"]) == result.schedule.iterations > 0
    assert np.all(log["end"] > log["start"]) and np.all(log["step_seconds"] > 0)
    for req, tl in zip(inst.requests, result.schedule.timelines, strict=True):
        assert tl.token_times[0] >= req.arrival and np.all(np.diff(tl.token_times) >= 0)
    metrics = score(inst, result.schedule)
    assert metrics.unfinished == 0 and metrics.requests == 6
    assert_exact_lengths(inst, result)


class RejectAt(Policy):
    """FCFS by index, except that it rejects `target` (Plan.reject) at time `at`."""

    name = "reject-at"

    def __init__(self, target: int, at: float) -> None:
        self.target, self.at = target, at

    def decide(self, view: EngineView) -> Plan:
        order = view.idx[np.argsort(view.idx)]
        if self.target in view.idx and view.now >= self.at - 1e-9:
            return Plan(run=order[order != self.target], reject=np.array([self.target]))
        return Plan(run=order, recheck_at=self.at if view.now < self.at else None)  # the simulator asks then


def test_e_rejected_request_is_aborted_with_a_clear_finish_reason(engine):
    requests = [thr(f"r{i}", 0.0, 50, 20) for i in range(3)]
    inst, result = run(engine, requests, policy=RejectAt(target=1, at=6 * TAU))
    reasons = result.stats["finish_reasons"]
    assert reasons == {"r0": "length", "r1": "abort", "r2": "length"}
    rejected = result.schedule.timelines[1]
    assert rejected.finish is None and rejected.rejected == pytest.approx(6 * TAU)
    assert 0 < len(rejected.token_times) < 20 and np.all(rejected.token_times <= rejected.rejected)
    metrics = score(inst, result.schedule)
    assert (metrics.rejected, metrics.slo_met, metrics.unfinished) == (1, 2, 0)
    # the simulator applies the same plan the same way
    sim = simulate(inst, RejectAt(target=1, at=6 * TAU))
    assert sim.timelines[1].rejected == pytest.approx(rejected.rejected)
    for mine, theirs in zip(result.schedule.timelines, sim.timelines, strict=True):
        np.testing.assert_allclose(mine.token_times, theirs.token_times, err_msg=mine.request_id)
