"""The compiled greedy knapsack and the stable sort shortcut give exactly what their plain
definitions give: the item-by-item walk of the order, and numpy's stable sorts."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from solvers.knapsack.greedy import density_order, greedy_knapsack
from solvers.stable_sort import argsort_in_kernel, prefix_in_kernel, stable_argsort


def _walk(values, weights, caps, max_items, order):
    """Take each item of `order` with value > 0 that still fits, until max_items are taken."""
    taken, used = [], np.zeros_like(caps)
    for i in order:
        if len(taken) == max_items:
            break
        if values[i] > 0 and np.all(used + weights[i] <= caps + 1e-9):
            taken.append(int(i))
            used = used + weights[i]
    return taken


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(0, 600), dims=st.integers(1, 3), own_order=st.booleans(),
       max_items=st.one_of(st.none(), st.integers(0, 300)), fractional=st.booleans())
def test_greedy_knapsack_is_the_walk_of_its_order(seed, n, dims, own_order, max_items, fractional):
    rng = np.random.default_rng(seed)
    values = rng.uniform(-0.2, 1.0, n)
    weights = rng.integers(0, 20, (n, dims)) + (rng.random((n, dims)) if fractional else 0.0)
    caps = rng.integers(1, 10 * n + 120, dims).astype(np.float64)
    order = rng.permutation(n) if own_order else density_order(values, weights, caps)
    got = greedy_knapsack(values, weights, caps, max_items=max_items, order=order if own_order else None)
    assert got.tolist() == _walk(values, weights, caps, n if max_items is None else max_items, order)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(0, 3000), ties=st.booleans())
def test_stable_argsort_is_numpys_stable_sort(seed, n, ties):
    """Above numpy's insertion-sort threshold (16 rows) its default sort is unstable: the runs
    of equal keys must be put back in order."""
    rng = np.random.default_rng(seed)
    key = rng.choice([0.0, -0.0, 1.5, np.nan, np.inf, -np.inf], n) if ties else rng.normal(size=n)
    tiebreak = rng.integers(0, 4, n).astype(np.float64)
    assert stable_argsort(key, tiebreak).tolist() == np.lexsort((tiebreak, key)).tolist()
    assert stable_argsort(key).tolist() == np.argsort(key, kind="stable").tolist()
    second = rng.integers(0, 3, n).astype(np.float64)
    assert stable_argsort(key, tiebreak, second).tolist() == np.lexsort((second, tiebreak, key)).tolist()


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(200, 5000), steps=st.integers(0, 5000), base=st.sampled_from(
    [1.0, -3.0, 1e-300, 5e-324, 7e12, -0.0]))
def test_stable_argsort_orders_keys_that_differ_in_their_last_bits(seed, n, steps, base):
    """Above SMALL rows keys are sorted packed with their position in their lowest bits: keys one
    or a few ulps apart (and subnormals, signed zeros, nan tiebreaks) must still come out in
    exact key, tiebreak, position order."""
    rng = np.random.default_rng(seed)
    ulps = rng.integers(-steps, steps + 1, n)
    key = np.array([base] * n)
    for direction in (np.inf, -np.inf):
        for _ in range(int(min(steps, 64))):  # walk some keys a few ulps up or down
            move = (ulps > 0) if direction > 0 else (ulps < 0)
            key[move] = np.nextafter(key[move], direction)
            ulps = ulps - np.sign(ulps) * move
    key[rng.random(n) < 0.05] = np.nan
    tiebreak = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 3, n).astype(np.float64))
    assert stable_argsort(key).tolist() == np.argsort(key, kind="stable").tolist()
    assert stable_argsort(key, tiebreak).tolist() == np.lexsort((tiebreak, key)).tolist()


@njit(cache=False)
def _sorted_in_a_kernel(k, key, tiebreak):
    """What a kernel gets from the in-kernel sorts (object mode above SMALL rows)."""
    return argsort_in_kernel(key, (tiebreak,)), prefix_in_kernel(k, key, (tiebreak,))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(0, 700), k=st.integers(0, 700), ties=st.booleans())
def test_sorts_called_from_kernels_are_numpys(seed, n, k, ties):
    """Kernels sort up to SMALL rows themselves and hand more to the packed numpy sort: either
    way np.lexsort's order (a prefix of it, at least k rows long, for prefix_in_kernel)."""
    rng = np.random.default_rng(seed)
    key = rng.choice([0.0, -0.0, 1.5, np.nan, np.inf, -np.inf], n) if ties else rng.normal(size=n)
    tiebreak = rng.integers(0, 4, n).astype(np.float64)
    whole, prefix = _sorted_in_a_kernel(k, key, tiebreak)
    want = np.lexsort((tiebreak, key)).tolist()
    assert whole.tolist() == want
    assert len(prefix) >= min(k, n) and prefix.tolist() == want[:len(prefix)]
