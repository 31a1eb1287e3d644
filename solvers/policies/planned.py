"""PlannedPolicy: follow a hindsight plan of token times, in either engine mode.

A plan gives every request the time at which each of its output tokens should be delivered
(from a simulated run, or from the window search's CP-SAT solution). The engine runs live
requests in the order of the planned time of their *next* token, so a plan that fits the engine
is followed step by step, and one that does not (timed mode, where iterations take as long as
their batch) degrades gracefully: whatever the plan scheduled earliest goes first, and the
engine's own rules (KV, budget, admission gate) decide what fits. Unlike ReplayPolicy it needs
neither slotted mode nor an ungated engine, so its runs are schedules of the engine as
configured; the search scores them by replaying (the replayed score, not the plan, is the result).

Requests with no plan (given up on) are left to a GiveUpPolicy around this one.
"""

from __future__ import annotations

import numpy as np

from formulations.online import EngineView, Plan, Policy


class PlannedPolicy(Policy):
    name = "planned"

    def __init__(self, token_times: list[np.ndarray]) -> None:
        """`token_times[i]`: planned delivery time of each output token of request i (seconds,
        non-decreasing); requests with fewer planned times than tokens keep their last one."""
        self._last = np.array([max(len(t) - 1, 0) for t in token_times], dtype=np.int64)
        padded = [t if len(t) else np.array([np.inf]) for t in token_times]
        self._start = np.concatenate([[0], np.cumsum([len(t) for t in padded])[:-1]]).astype(np.int64)
        self._flat = np.concatenate(padded) if padded else np.empty(0)

    def decide(self, view: EngineView) -> Plan:
        idx = view.idx
        key = self._flat[self._start[idx] + np.minimum(view.generated, self._last[idx])]
        return Plan(run=idx[np.lexsort((idx, view.arrival, key))])
