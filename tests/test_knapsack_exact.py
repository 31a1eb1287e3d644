"""Exact knapsack solvers: agree with each other and with brute force; the OR-Library reader."""

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formulations.exact.knapsack import KnapsackProblem, read_orlib
from formulations.requests import ValidationError
from solvers.knapsack.cpsat import solve_cpsat
from solvers.knapsack.dp import solve_dp
from solvers.knapsack.greedy import greedy_knapsack

DATA = Path(__file__).parent / "data" / "mknap_small.txt"


def brute_force(p: KnapsackProblem) -> float:
    best = 0.0
    for r in range(p.n + 1):
        for subset in itertools.combinations(range(p.n), r):
            taken = np.array(subset, dtype=np.int64)
            if p.is_feasible(taken):
                best = max(best, p.value(taken))
    return best


@st.composite
def problems(draw):
    n = draw(st.integers(1, 7))
    m = draw(st.integers(1, 3))
    values = draw(st.lists(st.integers(-2, 30), min_size=n, max_size=n))
    weights = draw(st.lists(st.lists(st.integers(0, 8), min_size=m, max_size=m), min_size=n, max_size=n))
    caps = draw(st.lists(st.integers(0, 15), min_size=m, max_size=m))
    max_items = draw(st.one_of(st.none(), st.integers(0, n)))
    real = draw(st.booleans())
    vals = np.array(values, dtype=float) + (0.25 if real else 0.0)
    return KnapsackProblem(vals, np.array(weights).reshape(n, m), np.array(caps), max_items=max_items)


@settings(max_examples=120, deadline=None)
@given(problems())
def test_exact_solvers_match_brute_force(p):
    best = brute_force(p)
    dp = solve_dp(p)
    cp = solve_cpsat(p, time_limit=5)
    assert dp.status == cp.status == "optimal"
    assert p.is_feasible(dp.taken) and p.is_feasible(cp.taken)
    assert dp.value == pytest.approx(best) and cp.value == pytest.approx(best)
    greedy = p.value(greedy_knapsack(p.values, p.weights, p.capacities, max_items=p.max_items))
    assert greedy <= best + 1e-9


def test_orlib_file_hand_checked_optima():
    probs = read_orlib(DATA)
    assert [(p.n, p.m) for p in probs] == [(4, 2), (3, 1), (6, 3)]
    assert probs[0].best_known == 17 and probs[2].best_known is None
    # Problem 1: items 0+1 use (9, 4) of (9, 6) for 17; problem 2: items 1+2 weigh 5 for 22.
    assert [solve_dp(p).value for p in probs] == [17, 22, brute_force(probs[2])]
    assert list(solve_cpsat(probs[0]).taken) == [0, 1]
    # The greedy takes item 0 then item 2 on problem 1 (density order) and is stuck at 15.
    assert probs[0].value(greedy_knapsack(probs[0].values, probs[0].weights, probs[0].capacities)) == 15


def test_orlib_reader_rejects_truncated_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1\n3 1 0\n1 2 3\n1 1\n")
    with pytest.raises(ValidationError, match="file ends"):
        read_orlib(bad)


def test_dp_refuses_huge_capacity():
    p = KnapsackProblem(np.ones(3), np.ones((3, 2), dtype=int), np.array([10**4, 10**4]))
    with pytest.raises(ValidationError, match="DP states"):
        solve_dp(p)


def test_cpsat_timeout_reports_bound():
    rng = np.random.default_rng(0)
    n, m = 250, 10
    weights = rng.integers(1, 1000, size=(n, m))
    p = KnapsackProblem(rng.integers(1, 1000, size=n).astype(float), weights, weights.sum(axis=0) // 2)
    res = solve_cpsat(p, time_limit=0.5, workers=1)
    assert p.is_feasible(res.taken)
    assert res.status in ("timeout", "optimal") and res.bound >= res.value
    if res.status == "timeout":
        assert res.bound > res.value
        assert res.bound <= p.values.sum()  # a real bound, not the "inf" of an unproven run


def test_non_integer_weights_rejected():
    with pytest.raises(ValidationError, match="weights must be integers"):
        KnapsackProblem(np.ones(2), np.array([[1.5], [1.0]]), np.array([2]))


def test_step_knapsack_from_engine_view():
    from dataclasses import dataclass

    from formulations.exact.generate import random_instance
    from formulations.exact.knapsack import step_knapsack

    @dataclass
    class View:  # the EngineView fields step_knapsack reads
        engine: object
        free_blocks: int
        prefill_left: np.ndarray
        computed: np.ndarray
        kv_blocks: np.ndarray

        def __len__(self):
            return len(self.computed)

    engine = random_instance(0, 3, block_size=4, token_budget=10, max_seqs=2).engine
    # request 0: fresh 9-token prompt (3 blocks); request 1: decoding, 8 tokens cached in 2 blocks,
    # so token 9 needs a third; request 2: decoding, 6 cached in 2 blocks, the 7th still fits
    view = View(engine, 3, np.array([9, 0, 0]), np.array([0, 8, 6]), np.array([0, 2, 2]))
    p = step_knapsack(view, np.array([5.0, 2.0, 1.0]))
    assert p.weights.tolist() == [[3, 9], [1, 1], [0, 1]]
    assert p.capacities.tolist() == [3, 10] and p.max_items == 2
    # 0 + 1 needs 4 blocks > 3; 0 + 2 uses 3 blocks and 10 tokens: value 6, the optimum
    assert solve_dp(p).value == solve_cpsat(p).value == brute_force(p) == 6.0
