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
from solvers.policies import signals
from solvers.policies.per_request import grown


class OfferedLoad:
    def __init__(self, window: float = 20.0, min_span: float = 5.0) -> None:
        self.window = window  # s
        self.min_span = min_span  # s: early on, divide by at least this (few arrivals seen: noisy)
        self.clear()

    def clear(self) -> None:
        self._seen = np.zeros(0, dtype=bool)  # per request index
        self._arrivals: deque[tuple[float, float]] = deque()  # (time first seen, engine seconds)
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
            self._seen = grown(self._seen, int(view.idx.max()) + 1, fill=False)
            new = np.flatnonzero(~self._seen[view.idx])
            if len(new):
                self._record(view, new)
        arrivals, horizon = self._arrivals, now - self.window
        while arrivals and arrivals[0][0] <= horizon:
            self._total -= arrivals.popleft()[1]
        if not arrivals:
            self._total = 0.0  # no rounding drift survives an empty window
        span = max(min(self.window, now - self._start), self.min_span)
        return self._total / span

    def _record(self, view: EngineView, new: np.ndarray) -> None:
        self._seen[view.idx[new]] = True
        out = np.maximum(view.predicted_output(0.5)[new], 1.0)
        prompt = view.prompt_len[new].astype(np.float64)
        steps = -(-prompt // view.engine.token_budget) + out - 1.0
        work = signals.engine_seconds(view.engine, prompt, out, prompt + out / 2.0, steps).tolist()
        self._arrivals.extend((view.now, w) for w in work)
        self._total += sum(work)
