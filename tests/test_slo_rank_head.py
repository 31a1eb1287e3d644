"""slo ranks only the head of its order when the greedy walk and the fill stop within it
(`stable_prefix`, in `_rank_at_once`, which `_walk_decision` calls): its plans must be exactly those of the whole ranking, on views where the head
suffices and on views where it must fall back (a seat left, a walk that runs past the head)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.policy_speed import PROFILE, view_sequence
from formulations.engine_spec import EngineSpec
from solvers.policies import slo
from solvers.policies.registry import make_policy
from solvers.stable_sort import stable_argsort, stable_prefix


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(0, 2000), k=st.integers(-1, 2100), ties=st.booleans())
def test_stable_prefix_is_a_prefix_of_the_whole_sort(seed: int, n: int, k: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    key = rng.choice([0.0, -0.0, 1.5, np.nan, np.inf, -np.inf], n) if ties else rng.normal(size=n)
    tiebreak = rng.integers(0, 4, n).astype(np.float64)
    head = stable_prefix(k, key, tiebreak)
    assert len(head) >= min(max(k, 0), n)
    assert head.tolist() == stable_argsort(key, tiebreak)[:len(head)].tolist()


@pytest.mark.parametrize("scenario", ["busy", "light"])
@pytest.mark.parametrize("max_seqs", [16, 256])
def test_head_ranking_plans_equal_whole_ranking_plans(monkeypatch, scenario: str, max_seqs: int) -> None:
    engine = dataclasses.replace(EngineSpec.from_profile(PROFILE), max_seqs=max_seqs)
    views = view_sequence(1024, 7, engine, scenario, 12)
    heads = []
    for selection in ("auto", "priority"):
        with_head, whole = make_policy("slo", selection=selection), make_policy("slo", selection=selection)
        with_head.reset(engine)
        whole.reset(engine)
        probe = make_policy("slo", selection=selection)  # the head a decision ranks first (its own state)
        probe.reset(engine)
        for view in views:
            step = probe.knapsack_inputs(view)
            head = slo._rank_at_once(step.values, step.weights, step.capacities, step.key, step.arrival, step.runnable,
                                     False, slo._HEAD_SEATS * max_seqs)
            heads.append(len(head) < len(step.runnable))
            got = with_head.decide(view)
            monkeypatch.setattr(slo, "_HEAD_SEATS", 10**9)
            want = whole.decide(view)
            monkeypatch.setattr(slo, "_HEAD_SEATS", 2)
            for field in ("run", "preempt", "reject"):
                assert getattr(got, field).tolist() == getattr(want, field).tolist()
            assert got.recheck_at == want.recheck_at
    assert any(heads)  # on these views the head is shorter than the whole ranking
