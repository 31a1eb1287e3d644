"""Fit the iteration latency model to step times measured on a real engine.

    step_seconds ~ c0 + c_prefill * prefill_tokens + c_decode * decode_seqs
                   + c_ctx * decode_ctx_tokens + c_prefill_ctx * prefill_pairs

by non-negative least squares (a negative coefficient would make the simulator's iteration
times go backwards with load, which no engine does). The columns are those of the vLLM
bridge's step log (engine_adapter/vllm_scheduler.py), so a run can be replayed in the simulator
with the engine it actually ran on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from formulations.latency_model import LatencyModel

FEATURES = ("prefill_tokens", "decode_seqs", "decode_ctx_tokens", "prefill_pairs")


@dataclass(frozen=True)
class LatencyFit:
    model: LatencyModel
    steps: int
    r2: float  # share of the step-time variance the model explains
    median_rel_error: float  # median |predicted - measured| / measured


def fit_latency(log: Mapping[str, np.ndarray], seconds_key: str = "step_seconds", name: str = "fitted",
                source: str = "") -> LatencyFit:
    """Least-squares (non-negative) latency coefficients from a step log."""
    y = np.asarray(log[seconds_key], dtype=np.float64)
    if len(y) < len(FEATURES) + 1:
        raise ValueError(f"need at least {len(FEATURES) + 1} steps to fit the latency model, got {len(y)}")
    x = np.column_stack([np.ones(len(y))] + [np.asarray(log[k], dtype=np.float64) for k in FEATURES])
    scale = np.maximum(x.max(axis=0), 1e-12)  # columns span 1 .. 1e6: scale for a stable solve
    coef, _ = nnls(x / scale, y)
    coef = coef / scale
    pred = x @ coef
    resid = y - pred
    spread = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / spread if spread > 0 else 1.0
    model = LatencyModel(c0=float(coef[0]), c_prefill=float(coef[1]), c_decode=float(coef[2]), c_ctx=float(coef[3]),
                         c_prefill_ctx=float(coef[4]), name=name, source=source)
    return LatencyFit(model, len(y), r2, float(np.median(np.abs(resid) / np.maximum(y, 1e-12))))
