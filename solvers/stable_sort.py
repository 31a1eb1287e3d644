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
    return _runs_in_order(np.argsort(key), key, tiebreaks or (key,))


@kernel
def _runs_in_order(order, key, tiebreaks):
    """`order` (sorted by `key`, ties in any order) with each run of equal keys (nan with nan, as
    numpy sorts them last) sorted by position, then stably by each tiebreak from the last to the
    first (so the first decides)."""
    start = 0
    while start < len(order):
        first = key[order[start]]
        end = start + 1
        while end < len(order) and (key[order[end]] == first or (first != first and key[order[end]] != key[order[end]])):
            end += 1
        if end - start > 1:
            run = np.sort(order[start:end])
            for j in range(len(tiebreaks) - 1, -1, -1):
                run = run[np.argsort(tiebreaks[j][run], kind="mergesort")]
            order[start:end] = run
        start = end
    return order
