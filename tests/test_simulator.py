"""The simulated engine on hand-computed cases (timing, chunking, preemption, DAG, errors)."""

from __future__ import annotations

import numpy as np
import pytest

from engine_adapter.simulator import SimulationStalled, simulate
from formulations.deadlines import t_alone
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import LatencyModel, prefill_pairs
from formulations.online import EngineView, Plan, PlanError, Policy
from formulations.qoe import token_lateness
from formulations.requests import Group, Request, RequestClass
from solvers.policies.fcfs import FCFSPolicy
from solvers.prediction.conditional import condition_on_generated
from solvers.prediction.oracle import NoisyOraclePredictor

LAT = LatencyModel(c0=0.01, c_prefill=0.001, c_decode=0.002, c_ctx=0.0001, c_prefill_ctx=1e-6)


def spec(**kw) -> EngineSpec:
    base = dict(kv_blocks=100, latency=LAT, block_size=4, token_budget=8, max_seqs=4)
    base.update(kw)
    return EngineSpec(**base)


def thr(rid: str, arrival: float, prompt: int, output: int) -> Request:
    return Request(rid, RequestClass.THROUGHPUT, arrival, prompt, output, slack_ratio=2.0)


@pytest.mark.parametrize("slot_time", [None, 0.25])
@pytest.mark.parametrize(("prompt", "output"), [(1, 1), (8, 1), (9, 4), (16, 6), (30, 12)])
def test_alone_finishes_t_alone_after_arrival(slot_time, prompt, output) -> None:
    s = spec(slot_time=slot_time)
    arrival = 1.25
    req = Request("a", RequestClass.LATENCY, arrival, prompt, output, ttft_target=1.0, read_rate=5.0)
    sched = simulate(Instance(s, (req,)), FCFSPolicy())
    tl = sched.timelines[0]
    assert tl.finish == pytest.approx(arrival + t_alone(s, prompt, output), rel=1e-12)
    assert len(tl.token_times) == output
    assert sched.iterations == -(-prompt // 8) + output - 1


def test_latency_mode_iteration_times() -> None:
    # prompt 10, budget 8: chunk 8 (pairs 36), chunk 2 from 8 (pairs 19) -> token 1; decode attends 11
    sched = simulate(Instance(spec(), (thr("a", 0.0, 10, 2),)), FCFSPolicy(), record_iterations=True)
    log = sched.meta["iteration_log"]
    expected = [LAT.iteration_time(8, 0, 0, prefill_pairs(0, 8)), LAT.iteration_time(2, 0, 0, prefill_pairs(8, 2)),
                LAT.iteration_time(0, 1, 11)]
    np.testing.assert_allclose(log["end"] - log["start"], expected, rtol=1e-12)
    assert log["prefill_tokens"].tolist() == [8, 2, 0]
    assert log["decode_seqs"].tolist() == [0, 0, 1]
    assert log["kv_used_blocks"].tolist() == [2, 3, 3]
    assert set(log) == {"start", "end", "prefill_tokens", "decode_seqs", "seqs", "tokens", "kv_used_blocks", "scheduled"}
    assert sched.meta["policy"] == "fcfs" and sched.meta["predictor"] == "oracle" and sched.meta["wall_seconds"] > 0


def test_slotted_budget_and_chunking_hand_computed() -> None:
    # budget 4: slot 0 gives A 4 of its 6 prompt tokens and B nothing; slot 1: A's last 2 (token 1)
    # and B's whole prompt (token 1, done); slot 2: A decodes its 2nd token.
    inst = Instance(spec(token_budget=4, slot_time=1.0), (thr("a", 0.0, 6, 2), thr("b", 0.0, 2, 1)))
    sched = simulate(inst, FCFSPolicy())
    a, b = sched.timelines
    assert a.token_times.tolist() == [2.0, 3.0]
    assert b.token_times.tolist() == [2.0]
    assert b.admissions == [1.0]
    assert sched.iterations == 3


def test_slotted_arrival_waits_for_slot_boundary_and_idle_jumps() -> None:
    inst = Instance(spec(slot_time=0.5), (thr("a", 0.3, 4, 1), thr("b", 7.1, 4, 2)))
    a, b = simulate(inst, FCFSPolicy()).timelines
    assert a.admissions == [0.5] and a.token_times.tolist() == [1.0]
    assert b.admissions == [7.5] and b.token_times.tolist() == [8.0, 8.5]


def test_latency_mode_idle_engine_starts_at_arrival() -> None:
    inst = Instance(spec(), (thr("a", 0.0, 4, 1), thr("b", 5.0, 4, 1)))
    a, b = simulate(inst, FCFSPolicy()).timelines
    assert b.admissions == [5.0]
    assert b.token_times[0] == pytest.approx(5.0 + t_alone(inst.engine, 4, 1))


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_kv_shortage_preempts_most_recent_and_resumes(mode) -> None:
    # block size 1, 6 blocks. Slot 0: both prefill 2 tokens (4 blocks); slot 1: both decode (6);
    # slot 2: A needs a 7th block -> B (later in run) is evicted; A finishes. Slot 3: B comes back:
    # recompute prefills prompt + 2 generated = 4 tokens, swap swaps in and decodes.
    s = spec(kv_blocks=6, block_size=1, slot_time=1.0, preemption=mode)
    inst = Instance(s, (thr("a", 0.0, 2, 3), thr("b", 0.0, 2, 3)))
    sched = simulate(inst, FCFSPolicy(), record_iterations=True)
    a, b = sched.timelines
    assert a.token_times.tolist() == [1.0, 2.0, 3.0] and a.preemptions == []
    assert b.token_times.tolist() == [1.0, 2.0, 4.0]
    assert b.preemptions == [2.0] and b.admissions == [0.0, 3.0]
    log = sched.meta["iteration_log"]
    assert log["prefill_tokens"].tolist() == [4, 0, 0, 4 if mode == "recompute" else 0]
    assert log["kv_used_blocks"].tolist() == [4, 6, 4, 4]  # A holds prompt + 2 tokens in slot 2


def test_swap_costs_are_charged_in_latency_mode() -> None:
    s = spec(kv_blocks=6, block_size=1, preemption="swap", swap_time_per_block=0.5)
    inst = Instance(s, (thr("a", 0.0, 2, 3), thr("b", 0.0, 2, 3)))
    log = simulate(inst, FCFSPolicy(), record_iterations=True).meta["iteration_log"]
    dur = log["end"] - log["start"]
    # iteration 2 swaps B out (3 blocks), iteration 3 swaps it back in (3 blocks)
    assert dur[2] == pytest.approx(LAT.iteration_time(0, 1, 4) + 1.5)
    assert dur[3] == pytest.approx(LAT.iteration_time(0, 1, 4) + 1.5)


def test_dag_child_released_when_last_parent_finishes() -> None:
    reqs = (
        Request("p1", RequestClass.BULK, 0.0, 4, 1, group="g"),
        Request("p2", RequestClass.BULK, 0.0, 4, 3, group="g"),
        Request("c", RequestClass.BULK, 0.0, 4, 1, group="g"),
    )
    group = Group("g", ("p1", "p2", "c"), 0.0, 2.0, edges=(("p1", "c"), ("p2", "c")))
    inst = Instance(spec(slot_time=1.0), reqs, (group,))
    p1, p2, c = simulate(inst, FCFSPolicy()).timelines
    assert p1.finish == 1.0 and p2.finish == 3.0
    assert c.release == 3.0 and c.admissions == [3.0] and c.token_times.tolist() == [4.0]


class Recorder(Policy):
    """fcfs that records what it saw."""

    name = "recorder"

    def __init__(self) -> None:
        self.inner = FCFSPolicy()
        self.seen: list[dict] = []

    def reset(self, engine) -> None:
        self.inner.reset(engine)
        self.seen = []

    def decide(self, view: EngineView) -> Plan:
        self.seen.append(dict(now=view.now, idx=view.idx.copy(), generated=view.generated.copy(),
                              delay=view.delay_area.copy(), lag=view.lag.copy(), pred=view.pred_quantiles.copy(),
                              done=[g.done.copy() for g in view.groups]))
        return self.inner.decide(view)


def test_view_lag_and_delay_area_match_qoe_closed_form() -> None:
    rng = np.random.default_rng(1)
    reqs = tuple(Request(f"r{i}", RequestClass.LATENCY, float(rng.uniform(0, 1)), int(rng.integers(1, 30)),
                         int(rng.integers(1, 25)), ttft_target=0.05, read_rate=float(rng.choice([10.0, 60.0])))
                 for i in range(12))
    inst = Instance(spec(max_seqs=3), reqs)
    rec = Recorder()
    sched = simulate(inst, rec)
    checked = 0
    for seen in rec.seen:
        for i, g, delay, lag in zip(seen["idx"], seen["generated"], seen["delay"], seen["lag"], strict=True):
            r = reqs[i]
            late = token_lateness(sched.timelines[i].token_times[:g], r.arrival, r.ttft_target, r.read_rate)
            assert delay == pytest.approx(late.sum(), abs=1e-9)
            assert lag == pytest.approx(late[-1] if g else 0.0, abs=1e-9)
            checked += g > 0
    assert checked > 20


def test_group_done_and_refined_predictions_in_view() -> None:
    reqs = (Request("p", RequestClass.BULK, 0.0, 4, 3, group="g"), Request("c", RequestClass.BULK, 0.0, 4, 2, group="g"))
    inst = Instance(spec(slot_time=1.0), reqs, (Group("g", ("p", "c"), 0.0, 2.0, edges=(("p", "c"),)),))
    rec = Recorder()
    predictor = NoisyOraclePredictor(sigma=1.0, seed=3)
    sched = simulate(inst, rec, predictor)
    raw = predictor.predict(reqs)
    for seen in rec.seen:
        done = seen["done"][0]
        assert done.tolist() == [sched.timelines[0].finish <= seen["now"], False]
        np.testing.assert_array_equal(seen["pred"], np.maximum(raw[seen["idx"]], seen["generated"][:, None] + 1))
    assert sched.meta["predictor"] == "noisy"


class Fixed(Policy):
    name = "fixed"

    def __init__(self, run, preempt=()) -> None:
        self.run, self.preempt = run, preempt

    def decide(self, view: EngineView) -> Plan:
        return Plan(run=np.array(self.run, dtype=np.int64), preempt=np.array(self.preempt, dtype=np.int64))


def test_plan_running_nothing_stalls() -> None:
    inst = Instance(spec(), (thr("a", 0.0, 4, 2),))
    with pytest.raises(SimulationStalled, match="runs none of the 1 live requests"):
        simulate(inst, Fixed([]))


@pytest.mark.parametrize(("run", "preempt", "match"), [
    ([1], [], "names request 'b' .index 1., which is not live"),
    ([0, 0], [], "names a request twice"),
    ([5], [], "request index 5, not in 0..1"),
    ([-1], [], "request index -1"),
    ([], [0], "'a', which holds no KV blocks"),
])
def test_plan_errors(run, preempt, match) -> None:
    inst = Instance(spec(), (thr("a", 0.0, 4, 2), thr("b", 9.0, 4, 2)))
    with pytest.raises(PlanError, match=match):
        simulate(inst, Fixed(run, preempt))


def test_progress_callback_reaches_one() -> None:
    seen: list[float] = []
    simulate(Instance(spec(), (thr("a", 0.0, 4, 2),)), FCFSPolicy(), progress=seen.append)
    assert seen[-1] == 1.0


def test_fast_view_equals_dataclass_construction() -> None:
    import dataclasses

    class Check(Policy):
        name = "check"
        checked = 0

        def decide(self, view: EngineView) -> Plan:
            fields = {f.name: getattr(view, f.name) for f in dataclasses.fields(EngineView)}
            rebuilt = EngineView(**fields)
            assert set(vars(view)) == set(vars(rebuilt))
            for f in dataclasses.fields(EngineView):
                assert getattr(rebuilt, f.name) is getattr(view, f.name)
            with pytest.raises(ValueError):
                view.generated[:] = 0  # read-only: a policy cannot corrupt the engine
            Check.checked += 1
            return Plan(run=view.idx)

    simulate(Instance(spec(), (thr("a", 0.0, 4, 2), thr("b", 0.5, 4, 2))), Check())
    assert Check.checked >= 2


class ConditionalNoisy(NoisyOraclePredictor):
    """Noisy quantiles refined by the learned predictors' conditional rule (row-wise, non-trivial)."""

    def refine(self, quantiles: np.ndarray, generated: np.ndarray) -> np.ndarray:
        return condition_on_generated(self.quantile_levels, quantiles, generated)


def test_lazy_incremental_refine_equals_refining_every_row() -> None:
    """The view refines only rows whose `generated` changed; the result is bit-identical to
    refining every live row at every decision."""
    rng = np.random.default_rng(7)
    reqs = tuple(Request(f"r{i}", RequestClass.LATENCY, float(rng.uniform(0, 3)), int(rng.integers(1, 40)),
                         int(rng.integers(1, 40)), ttft_target=0.5, read_rate=20.0) for i in range(60))
    inst = Instance(spec(kv_blocks=40, max_seqs=6, token_budget=32), reqs)
    predictor = ConditionalNoisy(sigma=0.8, seed=1)
    raw = predictor.predict(reqs)
    seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    class ReadsPredictions(Policy):
        name = "reads"

        def decide(self, view: EngineView) -> Plan:
            if len(seen) % 3 != 2:  # some decisions do not look: stale rows pile up in between
                seen.append((view.idx.copy(), view.generated.copy(), view.pred_quantiles.copy()))
            else:
                seen.append((view.idx.copy(), view.generated.copy(), None))
            return Plan(run=view.idx[np.argsort(view.arrival, kind="stable")])

    sched = simulate(inst, ReadsPredictions(), predictor)
    assert sum(len(tl.preemptions) for tl in sched.timelines) > 0
    looked = [s for s in seen if s[2] is not None]
    assert len(looked) > 50
    for idx, generated, pred in looked:
        np.testing.assert_array_equal(pred, predictor.refine(raw[idx], generated))


class RunOnlyNewest(Policy):
    """Runs everything until a second request is live, then only that one (pausing the first)."""

    name = "only-newest"

    def decide(self, view: EngineView) -> Plan:
        return Plan(run=view.idx[view.idx == view.idx.max()])


def test_a_plan_the_admission_gate_refuses_while_residents_pause_is_a_clear_stall() -> None:
    """'b' needs 5 free blocks for its whole prompt (its first 8-token chunk only 2); 'a' holds
    the rest and is paused: nothing can run until the policy changes its mind."""
    inst = Instance(spec(kv_blocks=6), (thr("a", 0.0, 4, 20), thr("b", 0.05, 20, 2)))
    assert inst.engine.reserve_full_prompt
    with pytest.raises(SimulationStalled, match="runs only waiting request 'b', which the admission gate holds back"):
        simulate(inst, RunOnlyNewest(), fast_forward=False)
    ungated = Instance(inst.engine.with_(reserve_full_prompt=False), inst.requests)
    assert simulate(ungated, RunOnlyNewest(), fast_forward=False).timelines[1].finish is not None


class PreemptOnce(Policy):
    """Runs its one request, preempting it once after its third token; records what it sees."""

    name = "preempt-once"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int, int]] = []  # (generated, computed, prefill_left, preemptions)

    def decide(self, view: EngineView) -> Plan:
        self.seen.append((int(view.generated[0]), int(view.computed[0]), int(view.prefill_left[0]),
                          int(view.preemptions[0])))
        if view.generated[0] == 3 and view.preemptions[0] == 0 and view.resident[0]:
            return Plan(run=view.idx[:0], preempt=view.idx, recheck_at=view.now + 0.01)
        return Plan(run=view.idx)


def test_a_recompute_that_reached_its_last_output_token_decodes() -> None:
    """After a preemption the prompt and the 3 outputs are recomputed in 3-token chunks; once only
    the last output token is left, the request is in the same state as a decoding one (vLLM's
    next step for it is the same one-token step), so the view says decoding, as the vLLM bridge's."""
    policy = PreemptOnce()
    inst = Instance(spec(token_budget=3), (thr("a", 0.0, 4, 6),))
    sched = simulate(inst, policy, fast_forward=False)
    assert len(sched.timelines[0].token_times) == 6
    resumed = [s for s in policy.seen if s[3] == 1 and s[1] > 0]
    assert (3, 6, 0, 1) in resumed  # 4 + 3 tokens known, 6 recomputed: decoding
    assert all(left == 0 for generated, computed, left, _ in resumed if computed == 4 + generated - 1)
