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
from dataclasses import dataclass, replace

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


def step_gap(log: Mapping[str, np.ndarray]) -> float:
    """Median time from the end of one step (`step_seconds` after its `start`) to the start of
    the next: the engine loop's own time between steps (output processing, the driver adding
    requests), which no step's `step_seconds` holds. The median skips the gaps where the engine
    idled for arrivals. 0 with fewer than two steps."""
    start = np.asarray(log["start"], dtype=np.float64)
    if len(start) < 2:
        return 0.0
    gaps = np.diff(start) - np.asarray(log["step_seconds"], dtype=np.float64)[:-1]
    return max(0.0, float(np.median(gaps)))


def with_step_gap(fit: LatencyFit, log: Mapping[str, np.ndarray]) -> LatencyFit:
    """The fit with `step_gap(log)` added to c0: a simulated iteration lasts from one step's start
    to the next's, as the engine's do."""
    model = fit.model
    return replace(fit, model=replace(model, c0=model.c0 + step_gap(log)))
