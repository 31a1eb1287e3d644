"""PlannedPolicy: follow a hindsight plan of token times, in either engine mode.

A plan gives every request the time at which each of its output tokens should be delivered
(from a simulated run, or from the window search's CP-SAT solution). The engine runs live
requests in the order of the planned time of their *next* token, so a plan that fits the engine
is followed step by step, and one that does not (timed mode, where iterations take as long as
their batch) degrades gracefully: whatever the plan scheduled earliest goes first, and the
engine's own rules (KV, budget, admission gate) decide what fits. Unlike ReplayPolicy it needs
neither slotted mode nor an ungated engine, so its runs are schedules of the engine as
configured; the search scores them by replaying (the replayed score, not the plan, is the result).

With `hold` (seconds; the slot time in slotted mode) a request whose next token is planned
later than now + hold pauses, as the plan says, and paused residents are preempted whenever a
planned request waits for admission (the engine never evicts a resident for a waiting request;
a plan's pauses hold no KV). Without it the policy is work-conserving, which under KV pressure
thrashes: a request behind its plan outranks the residents, is admitted, and is the next victim.

Requests with no plan (given up on) are left to a GiveUpPolicy around this one.
"""

from __future__ import annotations

import numpy as np

from formulations.online import EMPTY, EngineView, Plan, Policy

EPS = 1e-9


class PlannedPolicy(Policy):
    name = "planned"

    def __init__(self, token_times: list[np.ndarray], hold: float | None = None) -> None:
        """`token_times[i]`: planned delivery time of each output token of request i (seconds,
        non-decreasing); a request with fewer planned times than tokens keeps its last one."""
        self._last = np.array([max(len(t) - 1, 0) for t in token_times], dtype=np.int64)
        padded = [t if len(t) else np.array([np.inf]) for t in token_times]
        self._start = np.concatenate([[0], np.cumsum([len(t) for t in padded])[:-1]]).astype(np.int64)
        self._flat = np.concatenate(padded) if padded else np.empty(0)
        self.hold = hold

    def decide(self, view: EngineView) -> Plan:
        idx = view.idx
        key = self._flat[self._start[idx] + np.minimum(view.generated, self._last[idx])]
        order = np.lexsort((idx, view.arrival, key))
        if self.hold is None:
            return Plan(run=idx[order])
        due = key[order] <= view.now + self.hold + EPS
        run = idx[order[due]]
        later = key[order[~due]]
        recheck = float(later.min()) - self.hold if len(later) else None
        paused = ~np.isin(idx, run) & view.resident
        preempt = idx[paused] if (paused.any() and (~view.resident[np.isin(idx, run)]).any()) else EMPTY
        return Plan(run=run, preempt=preempt, recheck_at=recheck)
