"""Mean, median, p90 and p99 of a metric's values (the summary every latency metric reports)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Percentiles:
    mean: float | None
    p50: float | None
    p99: float | None
    p90: float | None = None  # absent from results stored before it was reported

    @classmethod
    def of(cls, values: np.ndarray) -> Percentiles:
        """Mean, median, p90 and p99 of `values`, which it reorders (no copy of a large array)."""
        if len(values) == 0:
            return cls(None, None, None)
        mean = float(values.mean())
        p50, p90, p99 = np.percentile(values, PERCENTILES, overwrite_input=True)
        return cls(mean, float(p50), float(p99), float(p90))
