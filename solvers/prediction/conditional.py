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


def _with_origin(values: np.ndarray) -> np.ndarray:
    """Grid values with the anchor point 0 (at level 0) in front: (n, K+1)."""
    out = np.zeros((values.shape[0], values.shape[1] + 1))
    out[:, 1:] = values
    return out


def cdf(levels: np.ndarray, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """F(x[i]) for each row i of `values` (n, K) at grid `levels` (K,), anchored at F(0) = 0."""
    n, k = values.shape
    x = np.asarray(x, dtype=np.float64)
    pts_v = _with_origin(values)
    pts_p = np.concatenate([[0.0], levels])
    seg = np.minimum((values <= x[:, None]).sum(axis=1), k - 1)  # segment [pts seg, seg+1]
    rows = np.arange(n)
    v0, v1 = pts_v[rows, seg], pts_v[rows, seg + 1]
    width = np.where(v1 > v0, v1 - v0, 1.0)
    f = pts_p[seg] + np.clip((x - v0) / width, 0.0, 1.0) * (pts_p[seg + 1] - pts_p[seg])
    beyond = x >= values[:, -1]
    excess = np.where(beyond, x - values[:, -1], 0.0)
    f_tail = 1.0 - (1.0 - levels[-1]) * np.exp(-excess / _tail_scale(levels, values))
    return np.where(beyond, f_tail, np.where(x <= 0, 0.0, f))


def quantile(levels: np.ndarray, values: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Q(p[i, j]) for row i: linear between grid points (and from (0, 0)), exponential tail
    above the last level."""
    n, k = values.shape
    p = np.asarray(p, dtype=np.float64)
    pts_v = _with_origin(values)
    pts_p = np.concatenate([[0.0], levels])
    theta = _tail_scale(levels, values)
    rows = np.arange(n)
    out = np.empty_like(p)
    for j in range(p.shape[1]):  # a few columns: vectorized over the requests
        pj = p[:, j]
        seg = np.clip(np.searchsorted(pts_p, pj, side="right") - 1, 0, k - 1)
        v0, v1 = pts_v[rows, seg], pts_v[rows, seg + 1]
        p0, p1 = pts_p[seg], pts_p[seg + 1]
        inner = v0 + (np.minimum(pj, p1) - p0) / (p1 - p0) * (v1 - v0)
        above = pj > levels[-1]
        tail = values[:, -1] + theta * np.log((1.0 - levels[-1]) / np.maximum(1.0 - np.where(above, pj, 0.0), 1e-12))
        out[:, j] = np.where(above, tail, inner)
    return out


def condition_on_generated(levels, quantiles: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """Quantiles (same levels) of the total length given L >= generated + 1, never below it."""
    levels = np.asarray(levels, dtype=np.float64)
    q = np.array(quantiles, dtype=np.float64)
    for k in range(1, q.shape[1]):  # a non-decreasing grid (columns: cheaper than accumulate)
        np.maximum(q[:, k], q[:, k - 1], out=q[:, k])
    g = np.asarray(generated, dtype=np.float64)
    if q.shape[0] == 0:
        return q
    f_g = cdf(levels, q, g)
    target = f_g[:, None] + levels[None, :] * (1.0 - f_g[:, None])
    return np.maximum(quantile(levels, q, target), (g + 1.0)[:, None])
