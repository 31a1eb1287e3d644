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
from solvers.policies import batching, signals


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

    def gain(self, view: EngineView, steps: np.ndarray, t: float, pre: np.ndarray | None = None) -> np.ndarray:
        """Service gain per request: its SLO weight, 1% of it once the SLO is out of reach.
        `pre`: signals.prefill_iterations(view), when the caller has it already."""
        bulk = np.flatnonzero(view.cls == signals.BULK)
        weight = 1.0
        if len(bulk) and view.groups:
            # only the groups with live members: view.groups lists every group of the run
            # (tens of thousands at 1M requests), too many to walk at every decision
            present, inverse = np.unique(view.group[bulk], return_inverse=True)
            live = np.bincount(inverse)
            sizes = np.array([len(view.groups[g].members) for g in present.tolist()], dtype=np.float64)
            weight = np.ones(len(view))
            weight[bulk] = sizes[inverse] / live[inverse]
        latency = view.cls == signals.LATENCY
        streams_only = len(view) > 0 and bool(latency.all())  # then the deadline test is never used
        feasible = None if streams_only else view.deadline - view.now - steps * t >= 0
        if latency.any():
            total = np.maximum(view.predicted_output(0.5), view.generated + 1.0)
            need = signals.latest_next_token(view, t, total, self.qoe_threshold)
            first = np.maximum(signals.prefill_iterations(view) if pre is None else pre, 1) * t
            in_time = need - view.now - first >= 0
            feasible = in_time if streams_only else np.where(latency, in_time, feasible)
        return np.where(feasible, weight, 0.01 * weight)

    def decide(self, view: EngineView) -> Plan:
        if len(view) == 0:
            return Plan(run=EMPTY)
        t = signals.typical_iteration(view)
        hi = np.maximum(view.predicted_output(self.quantile), view.generated + 1.0)
        pre = signals.prefill_iterations(view)
        steps = signals.steps_to_finish(view, hi, pre)
        density = self.gain(view, steps, t, pre) / steps
        runnable = view.release <= view.now + 1e-12
        if runnable.all():
            ranked = np.lexsort((view.arrival, -density))
        else:
            runnable = np.flatnonzero(runnable)
            ranked = runnable[np.lexsort((view.arrival[runnable], -density[runnable]))]
        window = self.window or view.engine.max_seqs
        head, rest = ranked[:window], ranked[window:]
        if len(head):
            closeness = np.abs(np.log(steps[head]) - np.log(steps[head[0]]))
            head = head[np.argsort(closeness, kind="stable")]
        return batching.plan_in_order(view, np.concatenate([head, rest]))
