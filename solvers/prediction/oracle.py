"""Predictors built from the true lengths: upper bounds and controlled-error studies."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from formulations.requests import Request
from solvers.prediction.base import DEFAULT_LEVELS, LengthPredictor


class OraclePredictor(LengthPredictor):
    """Knows every output length exactly (all quantiles equal the truth)."""

    name = "oracle"

    def __init__(self, quantile_levels: tuple[float, ...] = DEFAULT_LEVELS) -> None:
        self.quantile_levels = tuple(quantile_levels)

    def predict(self, requests: Sequence[Request]) -> np.ndarray:
        truth = np.array([r.output_len for r in requests], dtype=np.float64)
        return np.repeat(truth[:, None], len(self.quantile_levels), axis=1)


class NoisyOraclePredictor(LengthPredictor):
    """The truth times a log-normal error: estimate m = L * exp(sigma * z), z ~ N(0, 1).

    The predictor knows its own error law, so its quantile q is m * exp(sigma * Phi^-1(q)); the
    draw for a request depends only on (seed, request id), so adding requests to a workload does
    not change the others' estimates.
    """

    name = "noisy"

    def __init__(self, sigma: float, seed: int = 0, quantile_levels: tuple[float, ...] = DEFAULT_LEVELS) -> None:
        if sigma < 0:
            raise ValueError(f"noisy predictor: sigma={sigma} must be >= 0")
        self.sigma = sigma
        self.seed = seed
        self.quantile_levels = tuple(quantile_levels)
        from scipy.stats import norm  # ~60 MB: imported by the predictor that uses it, not by every run

        self._z = norm.ppf(np.asarray(self.quantile_levels))

    def predict(self, requests: Sequence[Request]) -> np.ndarray:
        errors = np.array([self._draw(r.id) for r in requests], dtype=np.float64)
        truth = np.array([r.output_len for r in requests], dtype=np.float64)
        median = truth * np.exp(self.sigma * errors)
        return np.maximum(1.0, median[:, None] * np.exp(self.sigma * self._z)[None, :])

    def _draw(self, request_id: str) -> float:
        key = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "little")
        return float(np.random.default_rng([self.seed, key]).standard_normal())
