"""Serving capacity: the highest request rate at which mean QoE stays >= a threshold.

This is the metric of the Andes paper (capacity at mean QoE >= 0.95). Between two measured
rates the QoE curve is interpolated linearly, so capacity is not quantised to the sweep's grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Capacity:
    """`rate` is the interpolated capacity; `bound` says how to read it.

    bound "exact": the curve crosses the threshold inside the swept range; "above": QoE never
    fell below the threshold, capacity is at least `rate` (the highest rate swept); "below":
    QoE was already below it at the lowest rate swept, capacity is under `rate`.
    """

    rate: float
    bound: str

    def label(self) -> str:
        prefix = {"exact": "", "above": ">= ", "below": "< "}[self.bound]
        return f"{prefix}{self.rate:.3g}"


def capacity(rates: np.ndarray, values: np.ndarray, threshold: float = 0.95) -> Capacity:
    """The largest rate r with values(r) >= threshold, scanning up from the lowest rate.

    The first time the curve drops below the threshold ends the scan (a curve that recovers at
    a higher rate by noise does not count: capacity is where service first breaks down).
    """
    rates = np.asarray(rates, dtype=float)
    values = np.asarray(values, dtype=float)
    if rates.shape != values.shape or rates.size == 0:
        raise ValueError(f"capacity needs equal, non-empty rates and values, got {rates.shape} and {values.shape}")
    order = np.argsort(rates)
    rates, values = rates[order], values[order]
    if values[0] < threshold:
        return Capacity(float(rates[0]), "below")
    below = np.flatnonzero(values < threshold)
    if below.size == 0:
        return Capacity(float(rates[-1]), "above")
    k = below[0]
    r0, r1, v0, v1 = rates[k - 1], rates[k], values[k - 1], values[k]
    return Capacity(float(r0 + (v0 - threshold) / (v0 - v1) * (r1 - r0)), "exact")
