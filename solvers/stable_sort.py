"""A stable argsort of float keys at a fraction of the price of numpy's.

numpy's stable argsort of thousands of float keys (a timsort) costs about twice its default
introsort, and both cost about three times numpy's sort of as many integers, which is
vectorized (x86-simd-sort). So a key and its position are packed into one integer that sorts
in the key's order (`_packed`: the key's IEEE bits mapped to an order-preserving integer, its
lowest bits replaced by the position), the integers are sorted, and the positions read back.
Keys that differ only in the dropped bits come out in position order, next to each other; each
such run, like each run of equal keys, is then put in key, tiebreak and position order
(`_unpacked_in_order`). The keys policies sort by (slacks, densities, due times) have few of
either, so the result is exactly np.lexsort's at about a third of its time.
"""

from __future__ import annotations

import numba
import numpy as np

from solvers.compiled import kernel


def stable_argsort(key: np.ndarray, *tiebreaks: np.ndarray) -> np.ndarray:
    """np.lexsort((*reversed(tiebreaks), key)): positions by `key` (nan last), ties by the first
    tiebreak, then the next, then by position; without one, np.argsort(key, kind="stable")."""
    tiebreaks = tiebreaks or (key,)
    if len(key) <= SMALL:
        return small_stable_argsort(key, tiebreaks)
    bits = max(len(key) - 1, 1).bit_length()
    return _unpacked_in_order(np.sort(_packed(np.asarray(key, dtype=np.float64), bits)), bits, key, tiebreaks)


SMALL = 256  # up to this many rows one compiled call sorts faster than numpy's sort and a pass


@kernel
def argsort_in_kernel(key, tiebreaks):
    """stable_argsort for kernels (`tiebreaks`: a tuple, at least one): up to SMALL rows in the
    kernel (small_stable_argsort); more by the packed numpy sort in object mode, because an
    interpreter round trip costs a few microseconds and numba's own sort of thousands of rows
    costs several times the packed one."""
    if len(key) <= SMALL:
        return small_stable_argsort(key, tiebreaks)
    with numba.objmode(order="int64[:]"):
        order = stable_argsort(key, *tiebreaks)
    return order


@kernel
def prefix_in_kernel(k, key, tiebreaks):
    """stable_prefix for kernels: the whole ranking up to SMALL rows (a superset of the prefix,
    cheaper than partitioning first), else stable_prefix in object mode (as argsort_in_kernel)."""
    if len(key) <= SMALL:
        return small_stable_argsort(key, tiebreaks)
    with numba.objmode(order="int64[:]"):
        order = stable_prefix(k, key, *tiebreaks)
    return order


@kernel
def small_stable_argsort(key, tiebreaks):
    """stable_argsort of a few rows (`tiebreaks`: a tuple, at least one) in one call: numba's
    merge sort (stable, nan last), then the runs of equal keys in tiebreak order. Compiled kernels
    call it directly; it is slower than numpy's sort above SMALL rows."""
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
def _packed(key, bits):
    """Per row, an integer that sorts as its key does (nan last, -0.0 with 0.0) in all but the
    lowest `bits` bits, which hold the row's position (so all are distinct)."""
    canonical = np.empty(len(key))
    for i in range(len(key)):  # one nan and one zero: numpy sorts every nan, and both zeros, as equals
        canonical[i] = np.nan if key[i] != key[i] else key[i] + 0.0
    out = canonical.view(np.int64)
    for i in range(len(key)):  # a negative float's magnitude bits count down
        order_bits = out[i] ^ _MAGNITUDE if out[i] < 0 else out[i]
        out[i] = ((order_bits >> bits) << bits) | i
    return out


_MAGNITUDE = (1 << 63) - 1  # every bit of an int64 but the sign


@kernel
def _unpacked_in_order(packed, bits, key, tiebreaks):
    """The positions of sorted `_packed` integers in key order (a run that shares the packed key
    bits but not the key, re-sorted by key: it starts in position order and numba's merge sort
    is stable), then each run of equal keys in tiebreak order (`_runs_in_order`)."""
    order = packed & ((1 << bits) - 1)
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and packed[end] >> bits == packed[start] >> bits:
            end += 1
        if end - start > 1 and not _equal_keys(order, start, end, key):
            run = order[start:end].copy()
            order[start:end] = run[np.argsort(key[run], kind="mergesort")]
        start = end
    return _runs_in_order(order, key, tiebreaks)


@kernel
def _equal_keys(order, start, end, key):
    """Whether order[start:end] all have the same key (nan with nan)."""
    first = key[order[start]]
    for t in range(start + 1, end):
        if not (key[order[t]] == first or (first != first and key[order[t]] != key[order[t]])):
            return False
    return True


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
