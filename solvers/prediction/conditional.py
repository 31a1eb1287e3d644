"""Conditioning a predicted quantile grid on "the request is still running".

A row of quantiles (levels p_1 < ... < p_K, values v_1 <= ... <= v_K) defines a distribution of
the total output length L: its CDF F is piecewise linear through (0, 0), (v_1, p_1), ...,
(v_K, p_K), with an exponential tail beyond v_K whose scale continues the slope of the last
segment. Once g tokens are out and the request has not finished, L >= g + 1, so

    P(L <= x | L > g) = (F(x) - F(g)) / (1 - F(g)),

and its quantile at level p is Q(F(g) + p (1 - F(g))), never below g + 1. This keeps the whole
shape of the prediction (a request that outlives its predicted median moves towards its upper
quantiles, at the rate the predicted tail says) instead of only clipping values at g + 1.
Everything is vectorized over requests; the result is non-decreasing in g and across levels.
"""

from __future__ import annotations

import numpy as np


def _tail_scale(levels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row: the exponential tail scale theta from the last two grid points (>= 1 token)."""
    if len(levels) < 2:
        return np.maximum(values[:, -1], 1.0)
    s_prev, s_last = 1.0 - levels[-2], 1.0 - levels[-1]
    return np.maximum((values[:, -1] - values[:, -2]) / np.log(s_prev / s_last), 1.0)


def cdf(levels: np.ndarray, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """F(x[i]) for each row i of `values` (n, K) at grid `levels` (K,)."""
    n, k = values.shape
    pts_v = np.concatenate([np.zeros((n, 1)), values], axis=1)  # (n, K+1) anchor F(0) = 0
    pts_p = np.concatenate([[0.0], levels])
    x = np.asarray(x, dtype=np.float64)
    seg = (pts_v <= x[:, None]).sum(axis=1) - 1  # last point at or below x, -1 if x < 0
    inside = (seg >= 0) & (seg < k)
    rows = np.arange(n)
    s = np.clip(seg, 0, k - 1)
    v0, v1 = pts_v[rows, s], pts_v[rows, s + 1]
    p0, p1 = pts_p[s], pts_p[s + 1]
    width = np.where(v1 > v0, v1 - v0, 1.0)
    f = np.where(inside, p0 + (x - v0) / width * (p1 - p0), 0.0)
    tail = seg >= k
    theta = _tail_scale(levels, values)
    f_tail = 1.0 - (1.0 - levels[-1]) * np.exp(-(x - values[:, -1]) / theta)
    return np.where(tail, f_tail, f)


def quantile(levels: np.ndarray, values: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Q(p[i, j]) for row i: linear between grid points, exponential tail above the last level."""
    n, k = values.shape
    pts_v = np.concatenate([np.zeros((n, 1)), values], axis=1)
    pts_p = np.concatenate([[0.0], levels])
    seg = np.clip(np.searchsorted(pts_p, p, side="right") - 1, 0, k - 1)  # (n, J)
    rows = np.arange(n)[:, None]
    v0, v1 = pts_v[rows, seg], pts_v[rows, seg + 1]
    p0, p1 = pts_p[seg], pts_p[seg + 1]
    inner = v0 + (np.minimum(p, p1) - p0) / (p1 - p0) * (v1 - v0)
    theta = _tail_scale(levels, values)[:, None]
    above = p > levels[-1]
    with np.errstate(divide="ignore"):
        tail = values[:, -1:] + theta * np.log((1.0 - levels[-1]) / np.maximum(1.0 - p, 1e-12))
    return np.where(above, tail, inner)


def condition_on_generated(levels, quantiles: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """Quantiles (same levels) of the total length given L >= generated + 1, never below it."""
    levels = np.asarray(levels, dtype=np.float64)
    q = np.maximum.accumulate(np.asarray(quantiles, dtype=np.float64), axis=1)
    g = np.asarray(generated, dtype=np.float64)
    if q.shape[0] == 0:
        return q.copy()
    f_g = cdf(levels, q, g)
    target = f_g[:, None] + levels[None, :] * (1.0 - f_g[:, None])
    return np.maximum(quantile(levels, q, target), (g + 1.0)[:, None])
