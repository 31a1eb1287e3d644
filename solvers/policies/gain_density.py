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


@kernel
def density_at(latency: bool, need: float, pre: int, deadline: float, steps: float, weight: float, now: float,
               t: float) -> float:
    """weight / steps where the SLO is still in reach, 1% of it where not. A stream (`latency`)
    is in reach if its first token, max(pre, 1) iterations of t away, can come by `need`
    (signals.latest_next_token_at); any other request if it finishes, `steps` iterations away,
    by its deadline (nan: never)."""
    if latency:
        in_reach = need - now - max(pre, 1) * t >= 0
    else:
        in_reach = deadline - now - steps * t >= 0
    return (weight if in_reach else 0.01 * weight) / steps


@kernel
def _density_each(cls, hi, mid, prefill, budget, deadline, weight, arrival, ttft_target, generated, read_rate,
                  delay_area, lag, now, t, threshold):
    """(steps to finish, gain density) of every request in one pass: the iterations to finish
    at the predicted length `hi` (`prefill`: tokens left after prefix-cache hits), and
    `density_at` with a stream's latest next token at the predicted length `mid` (each length
    at least generated + 1). One pass: at 64 requests a decision
    costs its numpy calls and kernel dispatches, not its arithmetic."""
    steps, density = np.empty(len(cls)), np.empty(len(cls))
    for i in range(len(cls)):
        floor = generated[i] + 1.0
        pre = signals.prefill_iterations_at(prefill[i], budget)
        steps[i] = signals.steps_to_finish_at(np.maximum(hi[i], floor), generated[i], pre)
        latency = cls[i] == signals.LATENCY
        need = np.nan
        if latency:
            ideal = signals.next_token_ideal_at(arrival[i], ttft_target[i], generated[i], read_rate[i])
            need = signals.latest_next_token_at(ideal, generated[i], read_rate[i], delay_area[i], lag[i], t,
                                                np.maximum(mid[i], floor), threshold, 1.0)
        density[i] = density_at(latency, need, pre, deadline[i], steps[i], weight[i], now, t)
    return steps, density


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

    @staticmethod
    def gain(view: EngineView) -> np.ndarray:
        """Service gain per request if its SLO is met: 1, a bulk request its group's size spread
        over the group's live members."""
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
        return weight

    def density(self, view: EngineView, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Iterations of remaining service per request (at the `quantile` length) and its gain
        density: its service gain (1% of it once the SLO is out of reach) per iteration."""
        return _density_each(view.cls, view.predicted_output(self.quantile), view.predicted_output(0.5),
                             view.prefill_after_hits(), view.engine.token_budget, view.deadline, self.gain(view),
                             view.arrival, view.ttft_target, view.generated, view.read_rate, view.delay_area,
                             view.lag, float(view.now), float(t), float(self.qoe_threshold))

    def decide(self, view: EngineView) -> Plan:
        if len(view) == 0:
            return Plan(run=EMPTY)
        steps, density = self.density(view, signals.typical_iteration(view))
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
