"""`gain-density`: service-gain density ranking, after Tempo/JITServe (arXiv 2504.20068).

Taken from the paper: each request carries a *service gain* that it earns only by meeting its
SLO (finishing much earlier earns nothing extra); the remaining service a request needs is
estimated conservatively from an upper quantile of its predicted length; requests are ranked by
gain density = gain / remaining service, and that estimate is refined online as tokens are
generated (the predictor's conditioning on `generated`). A batch is formed around the head of
the ranking from a window of requests adjacent in predicted remaining length (similar lengths
finish together, so the batch keeps its shape and KV is released in bulk).

What differs (our reading, the paper gives no pseudo-code we could follow exactly): gain is 1
per latency/throughput request and the group's size spread over its live members for bulk
requests, and 0.01x that once the SLO is out of reach; latency requests count as meeting their
SLO while their projected QoE stays >= the threshold; the window takes the `window` requests
(default max_seqs) of highest density, orders them by closeness of predicted remaining length to
the head's, and the rest follow in density order (so capacity is never left idle).
"""

from __future__ import annotations

import numpy as np

from formulations.online import EMPTY, EngineView, Plan, Policy
from solvers.compiled import kernel
from solvers.policies import batching, signals


_NO_STREAMS = np.empty(0)  # `need` when no request is a stream (then it is never read)


@kernel
def _density(latency: np.ndarray, need: np.ndarray, pre: np.ndarray, deadline: np.ndarray, steps: np.ndarray,
             weight: np.ndarray, now: float, t: float) -> np.ndarray:
    """weight / steps where the SLO is still in reach, 1% of it where not, in one pass (a dozen
    numpy calls otherwise, which is most of a decision at 64 requests). A stream is in reach if
    its first token, max(pre, 1) iterations away, can come by `need` (signals.latest_next_token);
    any other request if it finishes, `steps` iterations away, by its deadline (nan: never).
    The arithmetic is numpy's, operation for operation, so the floats are the same."""
    out = np.empty(len(steps))
    for i in range(len(steps)):
        if latency[i]:
            in_reach = need[i] - now - max(pre[i], 1) * t >= 0
        else:
            in_reach = deadline[i] - now - steps[i] * t >= 0
        out[i] = (weight[i] if in_reach else 0.01 * weight[i]) / steps[i]
    return out


class GainDensityPolicy(Policy):
    name = "gain-density"

    def __init__(self, quantile: float = 0.9, qoe_threshold: float = 0.95, window: int | None = None) -> None:
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"gain-density: quantile={quantile} must be in [0, 1]")
        if window is not None and window < 1:
            raise ValueError(f"gain-density: window={window} must be >= 1")
        self.quantile = quantile
        self.qoe_threshold = qoe_threshold
        self.window = window

    def density(self, view: EngineView, steps: np.ndarray, t: float, pre: np.ndarray,
                floor: np.ndarray) -> np.ndarray:
        """Gain density per request: its service gain (its SLO weight, 1% of it once the SLO is out
        of reach) per iteration of remaining service. `pre`: signals.prefill_iterations(view);
        `floor`: generated + 1 (the least total output length)."""
        weight = np.ones(len(view))
        if view.groups:
            bulk = np.flatnonzero(view.cls == signals.BULK)
            if len(bulk):
                # only the groups with live members: view.groups lists every group of the run
                # (tens of thousands at 1M requests), too many to walk at every decision
                present, inverse = np.unique(view.group[bulk], return_inverse=True)
                live = np.bincount(inverse)
                sizes = np.array([len(view.groups[g].members) for g in present.tolist()], dtype=np.float64)
                weight[bulk] = sizes[inverse] / live[inverse]
        latency = view.cls == signals.LATENCY
        need = _NO_STREAMS
        if latency.any():
            total = np.maximum(view.predicted_output(0.5), floor)
            need = signals.latest_next_token(view, t, total, self.qoe_threshold)
        return _density(latency, need, pre, view.deadline, steps, weight, view.now, t)

    def decide(self, view: EngineView) -> Plan:
        if len(view) == 0:
            return Plan(run=EMPTY)
        t = signals.typical_iteration(view)
        floor = view.generated + 1.0
        hi = np.maximum(view.predicted_output(self.quantile), floor)
        pre = signals.prefill_iterations(view)
        steps = signals.steps_to_finish(view, hi, pre)
        density = self.density(view, steps, t, pre, floor)
        if view.release.max() <= view.now + 1e-12:  # all runnable (one reduction, no mask)
            ranked = np.lexsort((view.arrival, -density))
        else:
            runnable = np.flatnonzero(view.release <= view.now + 1e-12)
            ranked = runnable[np.lexsort((view.arrival[runnable], -density[runnable]))]
        window = self.window or view.engine.max_seqs
        head, rest = ranked[:window], ranked[window:]
        if len(head):
            closeness = np.abs(np.log(steps[head]) - np.log(steps[head[0]]))
            head = head[np.argsort(closeness, kind="stable")]
        return batching.plan_in_order(view, np.concatenate([head, rest]))
