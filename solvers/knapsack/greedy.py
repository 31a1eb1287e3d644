"""The greedy m-D knapsack used inside policies (vectorized: it runs every scheduling step).

Items are ranked by value per unit of *normalized* weight, sum_j w_ij / C_j (the classic
"effective capacity" ratio for multidimensional knapsacks), then taken in that order whenever
they still fit. Cumulative sums accept whole runs of items
that fit at once; items that no longer fit alone are filtered out in one vector operation, so a
nearly full knapsack costs a few passes, not one Python step per item, and each pass only looks
at as many items as may still be taken.
"""

from __future__ import annotations

import numpy as np

WALK_ITEMS = 256  # orders up to this long are walked item by item (when the weights are whole numbers)


def densities(values: np.ndarray, weights: np.ndarray, capacities: np.ndarray) -> np.ndarray:
    """Value per normalized weight of each item (inf for an item that weighs nothing)."""
    caps = np.maximum(capacities, 1e-12).tolist()
    norm = weights[:, 0] / caps[0]
    for dim in range(1, len(caps)):  # a column at a time: a sum over a short axis iterates slowly
        norm = norm + weights[:, dim] / caps[dim]
    return np.where(norm > 0, values / np.maximum(norm, 1e-300), np.inf)


def density_order(values: np.ndarray, weights: np.ndarray, capacities: np.ndarray) -> np.ndarray:
    """Item indices by decreasing value per normalized weight (ties: lower index first)."""
    return np.argsort(-densities(values, weights, capacities), kind="stable")


def greedy_knapsack(
    values: np.ndarray,
    weights: np.ndarray,
    capacities: np.ndarray,
    max_items: int | None = None,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the chosen items, in the order they were taken.

    values: (n,), weights: (n, m) >= 0, capacities: (m,). Items with value <= 0 are never taken.
    `order` overrides the density ranking (policies pass their own priority order).
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64).reshape(len(values), -1)
    capacities = np.asarray(capacities, dtype=np.float64)
    if order is None:  # rank only the items that may be taken (ties: lower index first, as before)
        useful = np.flatnonzero(values > 0)
        order = useful[density_order(values[useful], weights[useful], capacities)]
    elif len(order) <= WALK_ITEMS and weights.shape[1] <= 2:  # a short given order: walk it at once
        ordered = weights[order]
        if _whole(ordered, capacities):
            limit = len(order) if max_items is None else max_items
            useful = values[order] > 0
            return order[walk_items(*_columns(ordered), capacities, limit, None if useful.all() else useful.tolist())]
        order = order[values[order] > 0]
    else:
        order = order[values[order] > 0]
    if len(order) <= 4 * WALK_ITEMS:  # an item too heavy for the empty knapsack is never taken:
        # dropped at once, a short order may then be short enough to walk item by item
        order = order[(weights[order] <= capacities[None, :] + 1e-9).all(axis=1)]
    limit = len(order) if max_items is None else min(max_items, len(order))
    if len(order) <= WALK_ITEMS and weights.shape[1] <= 2:
        ordered = weights[order]
        if _whole(ordered, capacities):
            return order[walk_items(*_columns(ordered), capacities, limit)]
    taken: list[np.ndarray] = []
    count = 0
    used = np.zeros_like(capacities)
    pending, start = order[:0], 0
    # Each pass looks at a window of the order no longer than the items still allowed (plus the
    # one that may break the prefix): with thousands of candidates and max_seqs seats, passes
    # touch the window, not the whole order. In the window it drops the items that no longer
    # fit alone (they never will: room only shrinks), then takes the longest prefix that fits
    # together; the item that broke the prefix cannot fit after it, so it is dropped too. Same
    # result as walking the order item by item.
    while count < limit:
        width = limit - count + 1
        window = np.concatenate([pending, order[start:start + width]])
        start += width
        if not len(window):
            break
        room = capacities - used
        window = window[np.all(weights[window] <= room[None, :] + 1e-9, axis=1)]
        if not len(window):
            pending = window
            continue
        cum = np.cumsum(weights[window], axis=0)
        fits = np.all(cum <= room[None, :] + 1e-9, axis=1)
        prefix = min(len(window) if fits.all() else int(np.argmin(fits)), limit - count)
        taken.append(window[:prefix])
        if prefix:
            used = used + cum[prefix - 1]
        count += prefix
        pending = window[prefix + (0 if fits.all() else 1):]
    return np.concatenate(taken).astype(np.int64) if taken else np.empty(0, dtype=np.int64)


def _whole(weights: np.ndarray, capacities: np.ndarray) -> bool:
    """Whether every weight and capacity is a whole number (then sums are exact in any order)."""
    return (all(abs(c) < 2**52 and c == int(c) for c in capacities.tolist())
            and bool((weights == np.floor(weights)).all()) and float(np.abs(weights).sum()) < 2**52)


def _columns(weights: np.ndarray) -> tuple[list[float], list[float] | None]:
    """The one or two weight columns of `weights` as lists, for `walk_items`."""
    return weights[:, 0].tolist(), (weights[:, 1].tolist() if weights.shape[1] == 2 else None)


def walk_items(first: list[float], second: list[float] | None, capacities: np.ndarray | tuple[float, ...],
               limit: int, useful: list[bool] | None = None) -> np.ndarray:
    """greedy_knapsack's walk one item at a time (items in order; `first`, `second`: their
    weights in one or two dimensions), for short orders of whole-number weights: a few Python
    steps per item cost less than the numpy calls of one vectorized pass. `useful`: per item,
    whether its value is positive (items without are skipped; None: all are). An item too heavy
    for the empty knapsack fits no room, so it needs no filter first. Returns the positions
    taken. A caller whose weights are whole numbers by construction (token and block counts) may
    call it directly, skipping greedy_knapsack's checks: the result is greedy_knapsack's."""
    second = [0.0] * len(first) if second is None else second
    # whole numbers: room stays exact, and w <= room is the vectorized walk's w <= room + 1e-9
    room_first = float(capacities[0])
    room_second = float(capacities[1]) if len(capacities) == 2 else 0.0
    if useful is None and len(first) <= limit and sum(first) <= room_first and sum(second) <= room_second:
        return np.arange(len(first))  # all of them fit together (whole numbers: the sums are exact)
    taken: list[int] = []
    for row, (w1, w2) in enumerate(zip(first, second, strict=True)):
        if len(taken) >= limit:
            break
        if w1 <= room_first and w2 <= room_second and (useful is None or useful[row]):
            taken.append(row)
            room_first -= w1
            room_second -= w2
    return np.array(taken, dtype=np.int64)


def best_of_greedy(
    values: np.ndarray,
    weights: np.ndarray,
    capacities: np.ndarray,
    max_items: int | None = None,
) -> np.ndarray:
    """The best of several greedy passes (a classic cheap improvement for m-D knapsacks).

    Orders tried: value per sum-normalized weight (as greedy_knapsack), value per the largest
    normalized weight (the binding dimension), and value alone (right when max_items binds and
    weights are slack). Each pass costs one greedy_knapsack; the largest total value wins (ties:
    the earlier order).
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64).reshape(len(values), -1)
    capacities = np.asarray(capacities, dtype=np.float64)
    norm_max = (weights / np.maximum(capacities, 1e-12)[None, :]).max(axis=1)
    by_max = np.where(norm_max > 0, values / np.maximum(norm_max, 1e-300), np.inf)
    index = np.arange(len(values))
    orders = (None, np.lexsort((index, -by_max)), np.lexsort((index, -values)))
    best, best_value = np.empty(0, dtype=np.int64), -np.inf
    for order in orders:
        taken = greedy_knapsack(values, weights, capacities, max_items=max_items, order=order)
        total = float(values[taken].sum())
        if total > best_value + 1e-12:
            best, best_value = taken, total
    return best
