"""Predictors that ignore the prompt text: the trivial baselines a learned model must beat.

`PriorPredictor` (registered as `none`: scheduling with no prediction) gives every request the
same quantile grid, a prior over output lengths; refinement still conditions it on the tokens
generated so far, which is all a policy without a predictor can know. `BucketPredictor` gives
the training quantiles of the request's prompt-length bucket (powers of two).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from formulations.requests import Request, ValidationError
from solvers.prediction.base import LengthPredictor
from solvers.prediction.conditional import condition_on_generated
from solvers.prediction.learned import LEVELS, check_levels, load_model

# ShareGPT first-turn responses (cl100k tokens), quantiles at LEVELS over the training split
# (hash split of conversation ids, see experiments/workloads/sharegpt/split.py); `slosched predictor eval`
# prints the same numbers as the `global` baseline's prior.
DEFAULT_PRIOR = (22.0, 47.0, 139.0, 268.0, 412.0, 610.0, 745.0)


class PriorPredictor(LengthPredictor):
    """The same quantile grid for every request (no information from the request)."""

    name = "none"

    def __init__(self, values: Sequence[float] | None = None, levels: Sequence[float] = LEVELS,
                 artifact: str | Path | None = None) -> None:
        if artifact is not None:
            if values is not None:
                raise ValidationError("none predictor: give values or artifact, not both")
            model = load_model(artifact)
            levels, values = model.prior_levels, model.prior_values
        elif values is None:
            values = DEFAULT_PRIOR
        self.quantile_levels = check_levels(levels, "none predictor")
        vals = np.asarray(values, dtype=np.float64)
        if vals.shape != (len(self.quantile_levels),) or np.any(vals < 1) or np.any(np.diff(vals) < 0):
            raise ValidationError(f"none predictor: values={tuple(values)!r} must be {len(self.quantile_levels)} "
                                  "non-decreasing numbers >= 1 (one per level)")
        self.values = vals

    @classmethod
    def fit(cls, output_len: np.ndarray, levels: Sequence[float] = LEVELS) -> PriorPredictor:
        return cls(values=np.quantile(np.asarray(output_len, dtype=np.float64), levels), levels=levels)

    def predict(self, requests: Sequence[Request]) -> np.ndarray:
        return np.repeat(self.values[None, :], len(requests), axis=0)

    def refine(self, quantiles: np.ndarray, generated: np.ndarray) -> np.ndarray:
        return condition_on_generated(self.quantile_levels, quantiles, generated)


def length_bucket(prompt_len: np.ndarray) -> np.ndarray:
    """Bucket b holds prompt lengths in [2^b, 2^(b+1))."""
    return np.floor(np.log2(np.maximum(np.asarray(prompt_len, dtype=np.float64), 1.0))).astype(np.int64)


class BucketPredictor(LengthPredictor):
    """Training quantiles of the output length per prompt-length bucket (power-of-two buckets).

    Buckets with fewer than `min_count` training examples borrow the nearest bucket that has
    enough; lengths beyond the trained range use the nearest bucket too.
    """

    name = "bucket"

    def __init__(self, table: dict[int, Sequence[float]], levels: Sequence[float] = LEVELS) -> None:
        if not table:
            raise ValidationError("bucket predictor: empty bucket table")
        self.quantile_levels = check_levels(levels, "bucket predictor")
        self.buckets = np.array(sorted(table), dtype=np.int64)
        self.values = np.array([table[b] for b in self.buckets], dtype=np.float64)

    @classmethod
    def fit(cls, prompt_len: np.ndarray, output_len: np.ndarray, levels: Sequence[float] = LEVELS,
            min_count: int = 50) -> BucketPredictor:
        buckets = length_bucket(prompt_len)
        output_len = np.asarray(output_len, dtype=np.float64)
        table = {int(b): np.quantile(output_len[buckets == b], levels)
                 for b in np.unique(buckets) if np.sum(buckets == b) >= min_count}
        if not table:
            raise ValidationError(f"bucket predictor: no bucket has {min_count} examples ({len(buckets)} given)")
        return cls(table, levels)

    def predict_lengths(self, prompt_len: np.ndarray) -> np.ndarray:
        b = length_bucket(prompt_len)
        nearest = np.abs(self.buckets[None, :] - b[:, None]).argmin(axis=1)
        return self.values[nearest]

    def predict(self, requests: Sequence[Request]) -> np.ndarray:
        return self.predict_lengths(np.array([r.prompt_len for r in requests], dtype=np.int64))

    def refine(self, quantiles: np.ndarray, generated: np.ndarray) -> np.ndarray:
        return condition_on_generated(self.quantile_levels, quantiles, generated)
