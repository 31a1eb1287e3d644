"""`slo` on hand-built situations."""

from dataclasses import replace

import numpy as np
import pytest

from engine_adapter.simulator import simulate
from formulations.instance import Instance
from formulations.online import GroupState
from formulations.requests import Request, RequestClass
from formulations.requests import ValidationError
from solvers.policies import batching, signals
from solvers.policies.registry import make_policy
from solvers.policies.slo import SloPolicy
from solvers.policies.slo_params import SloParams
from policy_views import SLOTTED, make_view

ONE_SEQ = SLOTTED.with_(max_seqs=1)  # one request per 0.1 s slot


def _decide(view, **params):
    policy = SloPolicy(**params)
    policy.reset(view.engine)
    return policy, policy.decide(view)


def test_admits_the_request_about_to_miss_its_deadline():
    # both need 1 prefill + 4 decodes = 5 slots = 0.5 s; A is due at 0.55 s (slack 0.05), B at 5 s
    view = make_view([dict(cls=1, deadline=5.0, pred=5.0, arrival=0.0),
                      dict(cls=1, deadline=0.55, pred=5.0, arrival=0.01)], engine=ONE_SEQ, now=0.01)
    _, plan = _decide(view)
    assert plan.run.tolist() == [1]


def test_request_that_cannot_meet_its_slo_yields():
    # A needs 0.5 s but is due in 0.3 s even at the optimistic quantile; B is feasible with slack
    view = make_view([dict(cls=1, deadline=0.3, pred=5.0), dict(cls=1, deadline=3.0, pred=5.0)], engine=ONE_SEQ)
    policy, plan = _decide(view)
    assert plan.run.tolist() == [1]
    assert policy.slack(view).doomed.tolist() == [True, False]
    # with room for both, the doomed one still runs (best effort)
    _, plan = _decide(make_view([dict(cls=1, deadline=0.3, pred=5.0), dict(cls=1, deadline=3.0, pred=5.0)]))
    assert sorted(plan.run.tolist()) == [0, 1]


def test_doom_uses_the_optimistic_quantile():
    # median 5 tokens would miss (0.5 s > 0.35 s); the 10% quantile (2 tokens: 0.2 s) still makes it
    view = make_view([dict(cls=1, deadline=0.35, pred=(2.0, 5.0, 8.0))], engine=ONE_SEQ)
    policy, _ = _decide(view)
    est = policy.slack(view)
    assert not est.doomed[0]
    assert est.slack[0] == pytest.approx(0.35 - 0.8)  # conservative (90%) quantile: 8 slots


def test_bulk_members_get_dag_latest_finish_deadlines():
    # chain 0 -> 1 -> 2, group deadline 10 s; member 0 is live (5 tokens: 0.5 s), 1 and 2 not yet
    # released: estimated like the live one (prompt 8 -> 1 prefill slot + 4 decodes = 0.5 s each)
    group = GroupState(id="g", members=np.array([0, 1, 2]), parents=[np.array([], dtype=np.int64), np.array([0]),
                       np.array([1])], deadline=10.0, prompt_len=np.array([8, 8, 8]), done=np.zeros(3, bool))
    view = make_view([dict(cls=2, deadline=10.0, group=0, pred=5.0, idx=0)], groups=[group])
    policy, _ = _decide(view)
    slack = policy.slack(view).slack
    latest_finish = 10.0 - 0.5 - 0.5
    assert slack[0] == pytest.approx(latest_finish - 0.0 - 0.5)


def test_urgent_latency_stream_beats_throughput_with_slack():
    # stream waiting since 0 with TTFT target 0.2 s: its first token must come by ~0.2 s
    view = make_view([dict(cls=1, deadline=4.0, pred=5.0, arrival=0.0),
                      dict(cls=0, ttft_target=0.2, read_rate=5.0, pred=20.0, arrival=0.05)], engine=ONE_SEQ, now=0.1)
    _, plan = _decide(view)
    assert plan.run.tolist() == [1]


def test_preempts_a_resident_only_when_blocks_are_needed_and_it_can_afford_it():
    engine = SLOTTED.with_(kv_blocks=6)
    # resident A (slack large) holds 4 of 6 blocks; waiting B (urgent) needs 3 blocks for its prompt
    rows = [dict(cls=1, deadline=50.0, pred=6.0, resident=True, generated=1, computed=16),
            dict(cls=1, deadline=0.45, pred=4.0, prompt_len=12, arrival=0.0)]
    # overloaded (offered load above overload_at): A's slack is far above the margin, it yields
    _, plan = _decide(make_view(rows, engine=engine), overload_at=0.0)
    assert plan.run.tolist() == [1]
    assert plan.preempt.tolist() == [0]
    # not overloaded: A yields only because it can wait out B's whole run (0.4 s) after paying
    # its recompute; with a deadline that leaves it less, A keeps its blocks and B waits
    _, plan = _decide(make_view(rows, engine=engine), overload_at=float("inf"))
    assert (plan.run.tolist(), plan.preempt.tolist()) == ([1], [0])
    tight = [dict(rows[0], deadline=0.9), rows[1]]  # A: 0.5 s of work, 0.1 s recompute: 0.3 s to spare
    _, plan = _decide(make_view(tight, engine=engine), overload_at=float("inf"))
    assert plan.run.tolist() == [0]
    assert plan.preempt.tolist() == []
    # overloaded but A's slack is within the margin: A keeps its blocks
    _, plan = _decide(make_view(rows, engine=engine), overload_at=0.0, preempt_margin_iterations=1e6)
    assert plan.preempt.tolist() == []
    # enough free blocks: nothing is preempted, both run
    _, plan = _decide(make_view(rows, engine=SLOTTED), overload_at=0.0)
    assert plan.preempt.tolist() == []
    assert sorted(plan.run.tolist()) == [0, 1]


def test_short_first_factor_is_capped():
    # three equally urgent requests; the nearly finished one's factor median/own = 20 is capped
    rows = [dict(cls=1, deadline=30.0, pred=p) for p in (1.0, 20.0, 40.0)]
    view = make_view(rows)
    for cap, expected in ((1.5, 1.5), (100.0, 20.0)):
        policy = SloPolicy(short_first_cap=cap)
        policy.reset(view.engine)
        values = policy.knapsack_inputs(view).values
        assert values[0] / values[1] == pytest.approx(expected, rel=0.05)


def test_rejects_unknown_selection_and_bad_parameters():
    with pytest.raises(ValueError, match="selection"):
        SloPolicy(selection="magic")
    with pytest.raises(ValueError, match="urgency_horizon"):
        SloPolicy(urgency_horizon=0.0)
    with pytest.raises(ValueError, match="overload_at"):
        SloPolicy(overload_at=-1.0)
    with pytest.raises(ValueError, match="short_first_cap"):
        SloPolicy(short_first_cap=0.0)
    with pytest.raises(ValueError, match="preempt_margin_iterations"):
        SloPolicy(preempt_margin_iterations=-1.0)


def test_admission_gives_up_on_the_most_expensive_when_all_cannot_fit():
    # one request per 0.1 s slot; all due at 1 s; 0.5 + 0.6 + 0.5 s of engine time: one must go,
    # and Moore-Hodgson drops the one with the most engine seconds (each is feasible alone)
    rows = [dict(cls=1, deadline=1.0, pred=5.0), dict(cls=1, deadline=1.0, pred=6.0), dict(cls=1, deadline=1.0, pred=5.0)]
    view = make_view(rows, engine=ONE_SEQ)
    policy = SloPolicy()
    policy.reset(ONE_SEQ)
    assert not policy.slack(view).doomed.any()
    assert policy.knapsack_inputs(view).given_up.tolist() == [False, True, False]
    # without admission control nobody is given up on
    policy = SloPolicy(admission=False)
    policy.reset(ONE_SEQ)
    assert not policy.knapsack_inputs(view).given_up.any()


def test_paused_stream_that_may_be_long_is_not_planned_as_nearly_done():
    # 100 tokens delivered at 5 tok/s, next one read at 21 s, now 15 s: 6 s of buffer. Predicted
    # total 101..300 tokens. Planning with the shortest length (one token left) would let it wait
    # ~10 s past its buffer; the tightest likely length brings it back within its buffer.
    row = dict(cls=0, ttft_target=1.0, read_rate=5.0, generated=100, pred=(101.0, 150.0, 300.0), arrival=0.0)
    policy, _ = _decide(make_view([row], now=15.0))
    est = policy.slack(make_view([row], now=15.0))
    assert not est.doomed[0]
    assert 0.0 < est.slack[0] < 6.0 + 1.0


def test_auto_selection_switches_to_density_packing_above_the_offered_load():
    # A is long (40 slots, slack 0.5 s), B short (2 slots, slack 1.8 s); one request per slot.
    # Least slack runs A; density packing (offered load above overload_at) runs the short B.
    rows = [dict(cls=1, deadline=4.5, pred=40.0), dict(cls=1, deadline=2.0, pred=2.0)]
    view = make_view(rows, engine=ONE_SEQ)
    assert _decide(view, overload_at=float("inf"))[1].run.tolist() == [0]
    assert _decide(view, overload_at=0.0)[1].run.tolist() == [1]
    assert _decide(view, selection="priority", overload_at=0.0)[1].run.tolist() == [0]


BUDGET_50 = SLOTTED.with_(token_budget=50, max_seqs=16)


def test_waiting_prefill_shares_the_step_with_a_running_decode():
    # one decode running, a 50-token prompt waiting, budget 50: the prompt takes the 49 tokens
    # the decode leaves (a partial chunk) instead of waiting for a step with the whole budget
    rows = [dict(cls=1, deadline=30.0, pred=20.0, resident=True, generated=1, computed=8),
            dict(cls=1, deadline=30.0, pred=5.0, prompt_len=50, arrival=0.1)]
    _, plan = _decide(make_view(rows, engine=BUDGET_50, now=0.1))
    assert plan.run.tolist() == [0, 1]  # the decode first: the engine gives the prompt the rest
    # the other way round too: an urgent prompt selected first still lets the decode in
    rows[1]["deadline"] = 0.6
    _, plan = _decide(make_view(rows, engine=BUDGET_50, now=0.1))
    assert plan.run.tolist() == [0, 1]


def test_simulated_steps_use_the_whole_budget_while_a_prompt_waits():
    requests = (Request(id="a", cls=RequestClass.THROUGHPUT, arrival=0.0, prompt_len=8, output_len=30, slack_ratio=5.0),
                Request(id="b", cls=RequestClass.THROUGHPUT, arrival=0.3, prompt_len=50, output_len=3, slack_ratio=5.0))
    schedule = simulate(Instance(BUDGET_50, requests), SloPolicy(), record_iterations=True)
    log = schedule.meta["iteration_log"]
    step = int(np.searchsorted(log["start"], 0.3 - 1e-9))  # the first step after b arrives
    assert log["tokens"][step] == 50 and log["seqs"][step] == 2
    assert log["tokens"][step + 1] == 2  # b's last prompt token (it delivers b's first token) and a's decode


def test_admission_give_ups_are_rejected_unless_reject_is_off():
    rows = [dict(cls=1, deadline=1.0, pred=5.0), dict(cls=1, deadline=1.0, pred=6.0), dict(cls=1, deadline=1.0, pred=5.0)]
    view = make_view(rows, engine=ONE_SEQ)
    _, plan = _decide(view)
    assert plan.reject.tolist() == [1] and 1 not in plan.run.tolist()
    _, plan = _decide(view, reject=False)
    assert plan.reject.tolist() == [] and len(plan.run) == 1


def test_parameters_by_name_go_through_the_dataclass():
    assert make_policy("slo", reject=False, urgency_horizon=2.0).params == SloParams(reject=False, urgency_horizon=2.0)
    with pytest.raises(ValidationError, match="nope"):
        make_policy("slo", nope=1)


def test_spare_budget_is_priced_after_prefix_cache_hits():
    # a decode runs; a waiting 60-token prompt has 32 tokens in the prefix cache, so the engine
    # charges it 28 tokens, and a 25-token prompt takes the 21 the budget of 50 still has
    rows = [dict(cls=1, deadline=30.0, pred=20.0, resident=True, generated=1, computed=8),
            dict(cls=1, deadline=30.0, pred=5.0, prompt_len=60), dict(cls=1, deadline=30.0, pred=5.0, prompt_len=25)]
    view = replace(make_view(rows, engine=BUDGET_50), cached=np.array([0, 32, 0]))
    run = batching.fill_budget(view, np.array([True, False, False]), np.arange(3), np.empty(0, dtype=np.int64),
                               signals.kv_weights(view))
    assert run.tolist() == [0, 1, 2]
    # without the hit the prompt takes the 49 tokens left and the other one waits
    view = replace(view, cached=np.zeros(3, dtype=np.int64))
    run = batching.fill_budget(view, np.array([True, False, False]), np.arange(3), np.empty(0, dtype=np.int64),
                               signals.kv_weights(view))
    assert run.tolist() == [0, 1]


def test_spare_room_admits_waiting_requests_in_priority_order_only():
    # a decode holds 50 of 64 blocks; the first waiting prompt in priority order needs 20, so the
    # smaller one behind it (5 blocks) is not admitted past it: it would hold the blocks the
    # first one waits for (head-of-line, as the engine admits its waiting queue)
    rows = [dict(cls=1, deadline=30.0, pred=20.0, resident=True, generated=1, computed=200),
            dict(cls=1, deadline=30.0, pred=5.0, prompt_len=80), dict(cls=1, deadline=30.0, pred=5.0, prompt_len=20)]
    view = make_view(rows, engine=BUDGET_50)
    chosen = np.array([True, False, False])
    none = np.empty(0, dtype=np.int64)
    assert batching.fill_budget(view, chosen, np.arange(3), none, signals.kv_weights(view)).tolist() == [0]
    # the smaller one first in priority order is admitted
    assert batching.fill_budget(view, chosen, np.array([0, 2, 1]), none, signals.kv_weights(view)).tolist() == [0, 2]


def test_spare_budget_fill_walks_the_order_the_selection_packed_by():
    # packing by density, D (20 tokens) is taken and 30 tokens are left: the fill gives them to
    # the next request in density order (C: short, ample slack) as a partial chunk, not to the
    # least-slack one (A: long, low value per token), which priority order would put first
    rows = [dict(cls=1, deadline=6.0, pred=40.0, prompt_len=60), dict(cls=1, deadline=20.0, pred=2.0, prompt_len=45),
            dict(cls=1, deadline=20.0, pred=2.0, prompt_len=20)]
    view = make_view(rows, engine=BUDGET_50)
    assert _decide(view, selection="density")[1].run.tolist() == [2, 1]
    assert _decide(view, selection="priority")[1].run.tolist() == [0]  # A first, with the whole budget
