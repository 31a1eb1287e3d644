"""best_of_greedy: never worse than the density greedy, never better than brute force."""

import itertools

import numpy as np

from solvers.knapsack.greedy import best_of_greedy, greedy_knapsack


def _brute(values, weights, caps, max_items):
    best = 0.0
    n = len(values)
    for r in range(min(n, max_items) + 1):
        for combo in itertools.combinations(range(n), r):
            if np.all(weights[list(combo)].sum(axis=0) <= caps):
                best = max(best, float(values[list(combo)].sum()))
    return best


def test_value_order_wins_when_the_item_count_binds():
    # two slots; density prefers the two light items (value 1 each), value order takes 1.9 + 1.8
    values = np.array([1.0, 1.0, 1.9, 1.8])
    weights = np.array([[1.0, 1.0], [1.0, 1.0], [4.0, 1.0], [4.0, 1.0]])
    caps = np.array([10.0, 10.0])
    assert values[greedy_knapsack(values, weights, caps, max_items=2)].sum() == 2.0
    taken = best_of_greedy(values, weights, caps, max_items=2)
    assert sorted(taken.tolist()) == [2, 3]


def test_between_greedy_and_brute_force_on_random_problems():
    rng = np.random.default_rng(3)
    for _ in range(60):
        n = int(rng.integers(1, 8))
        values = rng.uniform(0.1, 2.0, n)
        weights = rng.integers(0, 6, (n, 2)).astype(float)
        caps = rng.integers(3, 12, 2).astype(float)
        k = int(rng.integers(1, n + 1))
        taken = best_of_greedy(values, weights, caps, max_items=k)
        assert len(set(taken.tolist())) == len(taken) <= k
        assert np.all(weights[taken].sum(axis=0) <= caps + 1e-9)
        got = float(values[taken].sum())
        assert got >= float(values[greedy_knapsack(values, weights, caps, max_items=k)].sum()) - 1e-12
        assert got <= _brute(values, weights, caps, k) + 1e-12


def test_empty():
    assert best_of_greedy(np.zeros(0), np.zeros((0, 2)), np.ones(2)).tolist() == []
