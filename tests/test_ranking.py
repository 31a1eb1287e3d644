"""The partial rankings policies use over thousands of requests must equal a full np.lexsort."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.knapsack.greedy import greedy_knapsack
from solvers.policies import batching, ranking, signals
from benchmarks.policy_speed import synthetic_view
from formulations.engine_spec import EngineSpec


def _keys(seed: int, n: int) -> tuple[np.ndarray, ...]:
    """Keys with many ties, inf and nan: a bool primary, a coarse float with inf/nan, an index."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 8, n).astype(np.float64)
    coarse[rng.random(n) < 0.1] = np.inf
    coarse[rng.random(n) < 0.05] = np.nan
    return rng.permutation(n), coarse, rng.random(n) < 0.3


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3000), k=st.integers(0, 3100), depth=st.integers(1, 3))
def test_head_is_the_start_of_lexsort(seed: int, n: int, k: int, depth: int) -> None:
    keys = _keys(seed, n)[-depth:]
    assert np.array_equal(ranking.head(keys, k), np.lexsort(keys)[:k])


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3000), k=st.integers(0, 3100))
def test_head_of_a_key_array_is_that_of_its_columns(seed: int, n: int, k: int) -> None:
    # the transpose of a row-per-item array (sorted without a copy), as np.lexsort takes a (k, n) array
    keys = _keys(seed, n)
    rows = np.stack(keys, axis=1, dtype=np.float64)
    assert np.array_equal(ranking.head(rows.T, k), np.lexsort(keys)[:k])


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3000), seats=st.integers(1, 300), room=st.integers(0, 5000))
def test_greedy_in_ranking_takes_what_the_full_ranking_takes(seed: int, n: int, seats: int, room: int) -> None:
    keys = _keys(seed, n)
    rng = np.random.default_rng(seed + 1)
    values = np.where(rng.random(n) < 0.2, 0.0, 1.0)  # some items are never taken
    weights = rng.integers(1, 40, (n, 1)).astype(np.float64)
    caps = np.array([float(room)])
    want = greedy_knapsack(values, weights, caps, max_items=seats, order=np.lexsort(keys))
    assert np.array_equal(ranking.greedy_in_ranking(keys, values, weights, caps, seats), want)


def test_walk_stops_at_the_first_head_that_is_enough_and_else_ranks_all() -> None:
    keys = _keys(3, 5000)
    held = np.arange(5000) % 7 + 1
    need = 300.0
    first = ranking.walk(keys, lambda rows: held[rows].sum() >= need)
    full = np.lexsort(keys)
    assert len(first) < 5000 and np.array_equal(first, full[: len(first)])
    assert held[first].sum() >= need
    assert np.array_equal(ranking.walk(keys, lambda rows: False), full)


def test_rows_reads_each_column_of_the_chosen_requests() -> None:
    engine = EngineSpec.from_profile("llama3-8b-h100")
    view = synthetic_view(300, seed=5, engine=engine)
    picked = np.array([7, 3, 250, 3])
    sub = signals.rows(view, picked)
    assert len(sub) == 4 and sub.now == view.now and sub.engine is view.engine and sub.cached is None
    for name in ("idx", "arrival", "generated", "lag", "read_rate", "pred_quantiles"):
        assert np.array_equal(getattr(sub, name), getattr(view, name)[picked], equal_nan=True)
    assert np.array_equal(sub.predicted_output(0.5), view.predicted_output(0.5)[picked])


def test_greedy_in_ranking_of_no_items_takes_none() -> None:
    empty = np.empty(0)
    taken = ranking.greedy_in_ranking((empty,), empty, np.empty((0, 1)), np.array([5.0]), 3)
    assert taken.dtype == np.int64 and len(taken) == 0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(0, 3000), need=st.floats(-5.0, 20000.0))
def test_walk_to_sum_is_the_walk_to_a_sum(seed, n, need) -> None:
    """The compiled walk returns what `walk` returns with a sum as its stop (ties, inf and nan in
    the keys; a need that the first head meets, a later one, or none)."""
    keys = _keys(seed, n)
    held = np.random.default_rng(seed).integers(0, 9, n)
    rows = np.ascontiguousarray(np.stack(keys, axis=1), dtype=np.float64)
    want = ranking.walk(keys, lambda first: held[first].sum() >= need)
    assert np.array_equal(ranking.walk_to_sum(rows, held, need, ranking.FIRST_HEAD), want)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 2000), need=st.floats(0, 40_000))
def test_eviction_head_ranks_unchosen_residents_by_rank_until_they_free_the_need(seed, n, need) -> None:
    """batching.eviction_head: the unchosen residents by -rank, ties by position (a stable sort),
    as far as it takes to free `need` blocks, with the blocks each prefix frees; its victims
    (`enough`) are the first of the whole ranking that free the need."""
    rng = np.random.default_rng(seed)
    resident, chosen = rng.random(n) < 0.7, rng.random(n) < 0.3
    rank = rng.choice([-np.inf, 0.0, 1.0, 2.5, np.nan], n) if seed % 2 else rng.normal(size=n)
    kv_blocks = rng.integers(0, 40, n)
    ranked, freed = batching.eviction_head(resident, chosen, rank, kv_blocks, need)
    cand = np.flatnonzero(resident & ~chosen)
    whole = cand[np.argsort(-rank[cand], kind="stable")]
    assert ranked.tolist() == whole[:len(ranked)].tolist()
    assert freed.tolist() == np.cumsum(kv_blocks[ranked]).tolist()
    assert len(ranked) == len(whole) or freed[-1] >= need
    enough = np.cumsum(kv_blocks[whole]) >= need
    first = int(np.argmax(enough)) + 1 if enough.any() else len(whole)
    assert batching.enough(ranked, freed, need).tolist() == whole[:first].tolist()
