"""Offered load: how many seconds of engine time arrive per second, over a sliding window.

A policy that must choose between "meet every deadline in slack order" (right while the engine
can keep up) and "pack the cheapest work" (right once it cannot) needs to know which regime it
is in before the damage is done. Counting missed SLOs tells too late; the work that arrives
tells at once: each new request's predicted engine time (signals.engine_seconds with its median
predicted length) summed over the last `window` seconds, divided by the time observed. Above 1
the engine cannot finish everything whatever the order.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from formulations.online import EngineView
from solvers.compiled import kernel
from solvers.policies import signals
from solvers.policies.per_request import grown, index_bound


class OfferedLoad:
    def __init__(self, window: float = 20.0, min_span: float = 5.0) -> None:
        self.window = window  # s
        self.min_span = min_span  # s: early on, divide by at least this (few arrivals seen: noisy)
        self.clear()

    def clear(self) -> None:
        self._seen = np.zeros(0, dtype=bool)  # per request index
        self._arrivals: deque[tuple[float, list[float]]] = deque()  # (time first seen, engine seconds of each)
        self._total = 0.0  # engine seconds of `_arrivals`
        self._start: float | None = None

    def update(self, view: EngineView) -> float:
        """Record the requests seen for the first time; the load over the window.

        Work is added when a request is first seen and dropped when it leaves the window, so a
        decision costs the new arrivals, not the whole window."""
        now = view.now
        if self._start is None:
            self._start = now
        if len(view):
            self._seen = grown(self._seen, index_bound(view.idx), fill=False)
            work = _first_seen_work(self._seen, view.idx, view.predicted_output(0.5), view.prompt_len,
                                    signals.engine_costs(view.engine), view.engine.token_budget)
            if len(work):
                work = work.tolist()
                self._arrivals.append((now, work))
                self._total += sum(work)
        arrivals, horizon = self._arrivals, now - self.window
        while arrivals and arrivals[0][0] <= horizon:
            for w in arrivals.popleft()[1]:
                self._total -= w
        if not arrivals:
            self._total = 0.0  # no rounding drift survives an empty window
        span = max(min(self.window, now - self._start), self.min_span)
        return self._total / span


@kernel
def _first_seen_work(seen, idx, mid, prompt_len, costs, budget):
    """Engine seconds of each live request not seen before, in view order (signals.engine_seconds_at
    with the median predicted length, at least one token; its prompt prefilled in budget-sized
    chunks); marks them seen."""
    work, count = np.empty(len(idx)), 0
    for i in range(len(idx)):
        if seen[idx[i]]:
            continue
        seen[idx[i]] = True
        out, prompt = max(mid[i], 1.0), float(prompt_len[i])
        steps = signals.prefill_iterations_at(prompt_len[i], budget) + out - 1.0
        work[count] = signals.engine_seconds_at(costs, prompt, out, prompt + out / 2.0, steps)
        count += 1
    return work[:count]
