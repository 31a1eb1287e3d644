"""Rankings of thousands of live requests without full sorts from scratch.

Sorting is what a decision over thousands of requests spends its time on. A policy that uses
only the head of a ranking (max_seqs seats, the few victims that free enough blocks) need not
sort the rest: `head`, `walk` and `greedy_in_ranking` partition on the primary key first and sort
only the rows that can be in the head (every row tied with the k-th on the primary key is kept,
and the sort of that subset is np.lexsort's, stable by position), exactly np.lexsort's rows.
(A whole ranking by a float key with a tiebreak: batching.order_by.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from solvers.knapsack.greedy import greedy_knapsack

SMALL = 256  # below this many rows a full sort is as cheap as partitioning first
FIRST_HEAD = 64  # rows in the first head tried by `walk`; each retry takes four times more


def head(keys: tuple[np.ndarray, ...], k: int) -> np.ndarray:
    """np.lexsort(keys)[:k] (the last key is the primary one).

    Key by key from the primary: the rows below the k-th value are in the head, the rows tied
    with it are told apart by the next key, the rest are out (nan sorts last, as in lexsort)."""
    n = len(keys[-1])
    if k >= n or n <= SMALL:
        return np.lexsort(keys)[:k]
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    inside, cand, need = [], np.arange(n), k
    for key in reversed(keys):
        if len(cand) <= need:
            break
        values = key[cand]
        kth = np.partition(values, need - 1)[need - 1]
        below = values == values if kth != kth else values < kth
        tied = values != values if kth != kth else values == kth
        inside.append(cand[below])
        need -= len(inside[-1])
        cand = cand[tied]
    rows = np.sort(np.concatenate([*inside, cand]))  # position order: lexsort's ties stay as they are
    return rows[np.lexsort(tuple(key[rows] for key in keys))][:k]


def walk(keys: tuple[np.ndarray, ...], done: Callable[[np.ndarray], bool], first: int = FIRST_HEAD) -> np.ndarray:
    """The first head of np.lexsort(keys), `first` rows long and four times longer at each retry,
    for which `done(head)` holds, else the whole ranking (`done` is called on every head tried,
    the whole ranking included). `done` must hold for every longer head once it holds for one
    (a walk that stops at a count, a sum that reaches a need)."""
    n = len(keys[-1])
    k = max(first, 1)
    while 2 * k < n:  # a head of half the rows or more costs as much as the whole sort
        rows = head(keys, k)
        if done(rows):
            return rows
        k *= 4
    rows = np.lexsort(keys)
    done(rows)
    return rows


def greedy_in_ranking(keys: tuple[np.ndarray, ...], values: np.ndarray, weights: np.ndarray,
                      capacities: np.ndarray, max_items: int) -> np.ndarray:
    """greedy_knapsack(values, weights, capacities, max_items, order=np.lexsort(keys)), ranking
    only as far as the walk goes: the walk of a head is the whole walk once it has taken
    max_items items, or once no item outside the head fits in the room it leaves (room only
    shrinks, so the rest of the ranking would be walked without taking anything)."""
    taken = np.empty(0, dtype=np.int64)
    if len(values) == 0:
        return taken
    first = 2 * max_items + FIRST_HEAD
    if 2 * first >= len(values):  # `walk` would rank them all at once: no head to check
        return greedy_knapsack(values, weights, capacities, max_items=max_items, order=np.lexsort(keys))
    weights = np.asarray(weights, dtype=np.float64).reshape(len(values), -1)

    def whole_walk(rows: np.ndarray) -> bool:
        nonlocal taken
        taken = greedy_knapsack(values, weights, capacities, max_items=max_items, order=rows)
        if len(taken) >= max_items:
            return True
        room = capacities - weights[taken].sum(axis=0)
        outside = values > 0
        outside[rows] = False
        return not (weights[outside] <= room + 1e-9).all(axis=1).any()

    walk(keys, whole_walk, first=first)
    return taken
