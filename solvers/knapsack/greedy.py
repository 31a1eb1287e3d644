"""The greedy m-D knapsack used inside policies (vectorized: it runs every scheduling step).

Items are ranked by value per unit of *normalized* weight, sum_j w_ij / C_j (the classic
"effective capacity" ratio for multidimensional knapsacks), then taken in that order whenever
they still fit. A cumulative-sum fast path accepts the whole sorted prefix that fits without a
Python loop; only items after the first misfit are examined one by one.
"""

from __future__ import annotations

import numpy as np


def density_order(values: np.ndarray, weights: np.ndarray, capacities: np.ndarray) -> np.ndarray:
    """Item indices by decreasing value per normalized weight (ties: lower index first)."""
    norm = (weights / np.maximum(capacities, 1e-12)[None, :]).sum(axis=1)
    density = np.where(norm > 0, values / np.maximum(norm, 1e-300), np.inf)
    return np.lexsort((np.arange(len(values)), -density))


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
    weights = np.asarray(weights, dtype=np.float64).reshape(len(values), -1)
    capacities = np.asarray(capacities, dtype=np.float64)
    if order is None:
        order = density_order(values, weights, capacities)
    order = order[values[order] > 0]
    limit = len(order) if max_items is None else min(max_items, len(order))
    cum = np.cumsum(weights[order], axis=0)
    fits = np.all(cum <= capacities[None, :] + 1e-9, axis=1)
    prefix = len(order) if fits.all() else int(np.argmin(fits))
    prefix = min(prefix, limit)
    taken = list(order[:prefix])
    if prefix == limit:
        return np.asarray(taken, dtype=np.int64)
    used = cum[prefix - 1].copy() if prefix else np.zeros_like(capacities)
    for item in order[prefix:]:
        if len(taken) >= limit:
            break
        if np.all(used + weights[item] <= capacities + 1e-9):
            used += weights[item]
            taken.append(item)
    return np.asarray(taken, dtype=np.int64)
