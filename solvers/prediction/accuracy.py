"""Accuracy of quantile predictions against true output lengths.

MAE uses the median column; pinball loss and empirical coverage P(true <= predicted) are per
level (a calibrated level-q quantile covers a fraction q); Kendall's tau between the predicted
median and the truth measures the ranking quality shortest-job-first policies rely on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import kendalltau


def pinball(levels: Sequence[float], quantiles: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean pinball loss per level: mean of max(q (y - yhat), (q - 1)(y - yhat))."""
    lv = np.asarray(levels, dtype=np.float64)[None, :]
    diff = np.asarray(truth, dtype=np.float64)[:, None] - np.asarray(quantiles, dtype=np.float64)
    return np.maximum(lv * diff, (lv - 1.0) * diff).mean(axis=0)


def coverage(quantiles: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per level: fraction of requests whose true length is <= the predicted quantile."""
    return (np.asarray(truth, dtype=np.float64)[:, None] <= np.asarray(quantiles)).mean(axis=0)


def evaluate(levels: Sequence[float], quantiles: np.ndarray, truth: np.ndarray) -> dict:
    """All metrics as a JSON-ready dict."""
    levels = tuple(float(x) for x in levels)
    quantiles = np.asarray(quantiles, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if quantiles.shape != (len(truth), len(levels)):
        raise ValueError(f"evaluate: quantiles shape {quantiles.shape}, expected {(len(truth), len(levels))}")
    median = quantiles[:, int(np.argmin(np.abs(np.asarray(levels) - 0.5)))]
    if np.ptp(median) == 0:
        tau = 0.0  # a constant prediction carries no ranking
    else:
        tau = float(kendalltau(median, truth).statistic)
    return {
        "n": int(len(truth)),
        "levels": list(levels),
        "mae": float(np.abs(median - truth).mean()),
        "pinball": [float(x) for x in pinball(levels, quantiles, truth)],
        "coverage": [float(x) for x in coverage(quantiles, truth)],
        "kendall_tau": tau,
    }
