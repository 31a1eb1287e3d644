"""Rankings of thousands of live requests without full sorts from scratch.

Sorting is what a decision over thousands of requests spends its time on. A policy that uses
only the head of a ranking (max_seqs seats, the few victims that free enough blocks) need not
sort the rest: `head`, `walk` and `greedy_in_ranking` sort only the parts of the ranking that
hold its first rows (a compiled partial quicksort on all keys at once), exactly np.lexsort's
rows; `walk_to_sum` is `walk` to a sum of blocks, callable from a kernel. (A whole ranking by a
float key with a tiebreak: solvers.stable_sort; of a few hundred rows it costs less than a
partial quicksort of a head of a hundred or more.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from solvers.compiled import kernel
from solvers.knapsack.greedy import greedy_knapsack
from solvers.knapsack.greedy import walk as greedy_walk

SMALL = 256  # below this many rows a full sort is as cheap as partitioning first
FIRST_HEAD = 64  # rows in the first head tried by `walk`; each retry takes four times more


def head(keys: tuple[np.ndarray, ...], k: int) -> np.ndarray:
    """np.lexsort(keys)[:k] (the last key is the primary one). As for np.lexsort, `keys` is a
    tuple of columns or a (k, n) array of them: the transpose of an (n, k) C-contiguous float
    array is sorted without a copy (a caller that gathers the keys in one pass builds that).

    Above SMALL rows a partial quicksort (`_first_rows`) sorts only the parts of the ranking
    that hold the first k rows, in one compiled pass instead of numpy's sort per key; the whole
    ranking (k >= n) is np.lexsort's, whose per-key sorts are as fast."""
    n = len(keys[-1])
    if k >= n or n <= SMALL:
        return np.lexsort(keys)[:k]
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    # one row of keys per item, so a comparison reads one cache line (integer keys are exact
    # below 2**53, as request indices are; a bool is 0 or 1)
    if isinstance(keys, np.ndarray):
        return _first_rows(np.ascontiguousarray(keys.T, dtype=np.float64), k)
    return _first_rows(np.stack(keys, axis=1, dtype=np.float64), k)


@kernel
def _before(keys: np.ndarray, a: int, b: int) -> bool:
    """Whether row a comes before row b in np.lexsort order: by the last column first, nan after
    every number (two nans tie), then by the next column, and by position when all tie."""
    for col in range(keys.shape[1] - 1, -1, -1):
        x, y = keys[a, col], keys[b, col]
        if x < y:
            return True
        if y < x:
            return False
        if x != x:
            if y == y:
                return False
        elif y != y:
            return True
    return a < b


@kernel
def _first_rows(keys: np.ndarray, k: int) -> np.ndarray:
    """The first k rows (0 < k < n) in `_before` order: quicksort (median-of-three pivot) that
    never sorts a part lying wholly past k, insertion sort below 17 rows. `_before` is a total
    order, so the result is unique: exactly np.lexsort's. Ranges left for later wait on an
    explicit stack (the larger part of each split: at most log2(n) of them), not in recursion."""
    rows = np.arange(keys.shape[0])
    stack = np.empty(128, dtype=np.int64)
    stack[0], stack[1], top = 0, keys.shape[0], 2
    while top:
        top -= 2
        lo, hi = stack[top], stack[top + 1]
        while hi - lo > 16 and lo < k:
            mid = (lo + hi) // 2
            a, pivot, c = rows[lo], rows[mid], rows[hi - 1]
            if _before(keys, pivot, a):
                a, pivot = pivot, a
            if _before(keys, c, pivot):
                pivot, c = c, pivot
                if _before(keys, pivot, a):
                    a, pivot = pivot, a
            rows[lo], rows[mid], rows[hi - 1] = a, rows[hi - 2], c
            cut = lo + 1  # rows[lo + 1:cut] come before the pivot
            for t in range(lo + 1, hi - 2):
                if _before(keys, rows[t], pivot):
                    rows[t], rows[cut] = rows[cut], rows[t]
                    cut += 1
            rows[hi - 2], rows[cut] = rows[cut], pivot
            if cut - lo < hi - cut:
                stack[top], stack[top + 1], top = cut + 1, hi, top + 2
                hi = cut
            else:
                stack[top], stack[top + 1], top = lo, cut, top + 2
                lo = cut + 1
        if lo < k:
            for t in range(lo + 1, hi):
                row, u = rows[t], t
                while u > lo and _before(keys, row, rows[u - 1]):
                    rows[u] = rows[u - 1]
                    u -= 1
                rows[u] = row
    return rows[:k].copy()


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
    first = max_items + FIRST_HEAD
    if 2 * first >= len(values):  # `walk` would rank them all at once: no head to check
        return greedy_knapsack(values, weights, capacities, max_items=max_items, order=np.lexsort(keys))
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64).reshape(len(values), -1)
    capacities = np.asarray(capacities, dtype=np.float64)

    def whole_walk(rows: np.ndarray) -> bool:
        nonlocal taken
        taken = greedy_walk(values, weights, capacities, max_items, rows)
        if len(taken) >= max_items:
            return True
        return not _fits_outside(values, weights, capacities - weights[taken].sum(axis=0), rows)

    walk(keys, whole_walk, first=first)
    return taken


@kernel
def _fits_outside(values: np.ndarray, weights: np.ndarray, room: np.ndarray, rows: np.ndarray) -> bool:
    """Whether an item worth taking (value > 0) that is not one of `rows` fits in `room` (within
    the greedy walk's 1e-9), in one pass instead of a mask and a comparison of every item."""
    inside = np.zeros(len(values), dtype=np.bool_)
    inside[rows] = True
    for i in range(len(values)):
        if values[i] > 0 and not inside[i]:
            fits = True
            for dim in range(len(room)):
                fits = fits and weights[i, dim] <= room[dim] + 1e-9
            if fits:
                return True
    return False


@kernel
def walk_to_sum(keys: np.ndarray, held: np.ndarray, need: float, first: int) -> np.ndarray:
    """walk(keys.T, lambda rows: held[rows].sum() >= need, first) in one compiled call, `keys` a
    row per item (C-contiguous floats): the first head (`first` rows, four times longer at each
    retry) whose items hold `need`, else the whole ranking. A caller that builds the keys in a
    kernel ranks without a round trip per head."""
    n = keys.shape[0]
    k = max(first, 1)
    while 2 * k < n:
        rows = _first_rows(keys, k)
        if held[rows].sum() >= need:
            return rows
        k *= 4
    return _first_rows(keys, n) if n else np.empty(0, dtype=np.int64)
