"""`gain-density` and `ltr` on hand-built situations."""

from solvers.policies.gain_density import GainDensityPolicy
from solvers.policies.ltr import LtrPolicy
from policy_views import SLOTTED, make_view

ONE_SEQ = SLOTTED.with_(max_seqs=1)


def test_gain_density_prefers_short_feasible_request():
    view = make_view([dict(cls=1, deadline=10.0, pred=40.0), dict(cls=1, deadline=10.0, pred=4.0)], engine=ONE_SEQ)
    plan = GainDensityPolicy().decide(view)
    assert plan.run.tolist() == [1, 0]


def test_gain_density_demotes_request_past_its_deadline():
    # the short one can no longer finish by 0.1 s (needs 4 slots): its gain drops to 1%
    view = make_view([dict(cls=1, deadline=10.0, pred=40.0), dict(cls=1, deadline=0.1, pred=4.0)], engine=ONE_SEQ)
    plan = GainDensityPolicy().decide(view)
    assert plan.run.tolist() == [0, 1]


def test_gain_density_window_orders_by_length_adjacency():
    # densities: 1/3 (A) > 1/4 (B) > 1/30 (C) > 1/100 (D)... window of 3 around A: B (4) before C (30)
    rows = [dict(cls=1, deadline=99.0, pred=p) for p in (100.0, 30.0, 3.0, 4.0)]
    plan = GainDensityPolicy(window=3).decide(make_view(rows))
    assert plan.run.tolist()[:3] == [2, 3, 1]


def test_ltr_shortest_first_then_starving_request_is_promoted():
    policy = LtrPolicy(starvation_iterations=3, quantum_iterations=2)
    policy.reset(ONE_SEQ)
    rows = [dict(cls=1, pred=50.0, arrival=0.0), dict(cls=1, pred=5.0, arrival=0.0)]
    runs = [policy.decide(make_view(rows, engine=ONE_SEQ)).run.tolist()[:1] for _ in range(6)]
    # the short job runs; the long one starves 3 decisions, then holds the slot for its 2-step quantum
    assert runs == [[1], [1], [1], [0], [0], [1]]
