"""A stable argsort at the price of numpy's default one.

numpy's stable sort of thousands of float keys (a timsort) costs about twice its default
introsort (vectorized). The keys policies sort by (slacks, densities, due times) have few ties,
so sorting unstably and then putting each run of equal keys back in order (`_runs_in_order`)
gives exactly the stable permutation in about half the time.
"""

from __future__ import annotations

import numpy as np

from solvers.compiled import kernel


def stable_argsort(key: np.ndarray, *tiebreaks: np.ndarray) -> np.ndarray:
    """np.lexsort((*reversed(tiebreaks), key)): positions by `key` (nan last), ties by the first
    tiebreak, then the next, then by position; without one, np.argsort(key, kind="stable")."""
    tiebreaks = tiebreaks or (key,)
    if len(key) <= SMALL:
        return _small_sorted(key, tiebreaks)
    return _runs_in_order(np.argsort(key), key, tiebreaks)


SMALL = 256  # up to this many rows one compiled call sorts faster than numpy's sort and a pass


@kernel
def _small_sorted(key, tiebreaks):
    """stable_argsort of a few rows in one call: numba's merge sort (stable, nan last), then the
    runs of equal keys in tiebreak order."""
    return _runs_in_order(np.argsort(key, kind="mergesort"), key, tiebreaks)


def stable_prefix(k: int, key: np.ndarray, *tiebreaks: np.ndarray) -> np.ndarray:
    """The first rows of stable_argsort(key, *tiebreaks), at least k of them (all if fewer): every
    row whose key is at most the k-th smallest, so the prefix is exact whatever the ties. A
    partition and a sort of about k rows instead of a sort of all of them, for a caller that
    walks only the head of a ranking."""
    if not 0 < k < len(key):
        return stable_argsort(key, *tiebreaks)
    kth = np.partition(key, k - 1)[k - 1]
    if kth != kth:  # nan: the prefix runs into the nans, which sort last
        return stable_argsort(key, *tiebreaks)
    rows = np.flatnonzero(key <= kth)
    return rows[stable_argsort(key[rows], *(tiebreak[rows] for tiebreak in tiebreaks))]


@kernel
def _runs_in_order(order, key, tiebreaks):
    """`order` (sorted by `key`, ties in any order) with each run of equal keys (nan with nan, as
    numpy sorts them last) put in tiebreak order, then position order (`_before`): a short run by
    insertion in place, a long one by numpy's stable sorts (by position, then each tiebreak from
    the last to the first, so the first decides)."""
    start = 0
    while start < len(order):
        first = key[order[start]]
        end = start + 1
        while end < len(order) and (key[order[end]] == first or (first != first and key[order[end]] != key[order[end]])):
            end += 1
        if end - start > SHORT_RUN:
            run = np.sort(order[start:end])
            for j in range(len(tiebreaks) - 1, -1, -1):
                run = run[np.argsort(tiebreaks[j][run], kind="mergesort")]
            order[start:end] = run
        else:
            for t in range(start + 1, end):
                row, u = order[t], t
                while u > start and _before(tiebreaks, row, order[u - 1]):
                    order[u] = order[u - 1]
                    u -= 1
                order[u] = row
        start = end
    return order


SHORT_RUN = 16  # runs of equal keys up to this long are sorted in place: no allocation per run


@kernel
def _before(tiebreaks, a, b):
    """Whether position a comes before b: by the first tiebreak (nan after every number, two
    nans tie), then the next, then by position."""
    for j in range(len(tiebreaks)):
        x, y = tiebreaks[j][a], tiebreaks[j][b]
        if x < y or (y != y and x == x):
            return True
        if y < x or (x != x and y == y):
            return False
    return a < b
