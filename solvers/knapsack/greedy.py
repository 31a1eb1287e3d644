"""The greedy m-D knapsack used inside policies (it runs every scheduling step).

Items are ranked by value per unit of *normalized* weight, sum_j w_ij / C_j (the classic
"effective capacity" ratio for multidimensional knapsacks), then taken in that order whenever
they still fit: one compiled walk over the order (`walk`), which stops at the item limit.
"""

from __future__ import annotations

import numpy as np

from solvers.compiled import kernel
from solvers.stable_sort import stable_argsort


def densities(values: np.ndarray, weights: np.ndarray, capacities: np.ndarray) -> np.ndarray:
    """Value per normalized weight of each item (inf for an item that weighs nothing)."""
    return densities_of(np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64),
                        np.asarray(capacities, dtype=np.float64))


@kernel
def densities_of(values, weights, capacities):
    """densities of float arrays, one item at a time (no temporaries over thousands of items; a
    kernel that ranks by density calls it directly); a capacity counts as at least 1e-12."""
    caps = np.maximum(capacities, 1e-12)
    out = np.empty(len(values))
    for i in range(len(values)):
        norm = weights[i, 0] / caps[0]
        for dim in range(1, len(caps)):
            norm = norm + weights[i, dim] / caps[dim]
        out[i] = values[i] / max(norm, 1e-300) if norm > 0 else np.inf
    return out


def density_order(values: np.ndarray, weights: np.ndarray, capacities: np.ndarray) -> np.ndarray:
    """Item indices by decreasing value per normalized weight (ties: lower index first)."""
    return stable_argsort(-densities(values, weights, capacities))


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
    if order is None:  # rank only the items that may be taken (ties: lower index first)
        useful = np.flatnonzero(values > 0)
        order = useful[density_order(values[useful], weights[useful], capacities)]
    limit = len(order) if max_items is None else max_items
    return walk(values, weights, capacities, limit, np.asarray(order, dtype=np.int64))


@kernel
def walk(values: np.ndarray, weights: np.ndarray, capacities: np.ndarray, limit: int,
         order: np.ndarray) -> np.ndarray:
    """Take each item of `order` with value > 0 that still fits (used + w <= C + 1e-9 in every
    dimension), until `limit` items are taken; their indices in the order taken."""
    taken = np.empty(min(limit, len(order)), dtype=np.int64)
    used = np.zeros(len(capacities))
    count = 0
    for i in order:
        if count >= limit:
            break
        if values[i] <= 0:
            continue
        fits = True
        for dim in range(len(capacities)):
            if used[dim] + weights[i, dim] > capacities[dim] + 1e-9:
                fits = False
                break
        if fits:
            for dim in range(len(capacities)):
                used[dim] += weights[i, dim]
            taken[count] = i
            count += 1
    return taken[:count]


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
