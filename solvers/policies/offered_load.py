"""Offered load: how many seconds of engine time arrive per second, over a sliding window.

A policy that must choose between "meet every deadline in slack order" (right while the engine
can keep up) and "pack the cheapest work" (right once it cannot) needs to know which regime it
is in before the damage is done. Counting missed SLOs tells too late; the work that arrives
tells at once: each new request's predicted engine time (signals.engine_seconds with its median
predicted length) summed over the last `window` seconds, divided by the time observed. Above 1
the engine cannot finish everything whatever the order.
"""

from __future__ import annotations

import numpy as np

from formulations.online import EngineView
from solvers.policies import signals
from solvers.policies.per_request import grown


class OfferedLoad:
    def __init__(self, window: float = 20.0, min_span: float = 5.0) -> None:
        self.window = window
        self.min_span = min_span  # early on, divide by at least this (few arrivals seen: noisy)
        self.clear()

    def clear(self) -> None:
        self._seen = np.zeros(0, dtype=bool)  # per request index
        self._times = np.zeros(0)
        self._work = np.zeros(0)
        self._start: float | None = None

    def update(self, view: EngineView) -> float:
        """Record the requests seen for the first time; the load over the window."""
        size = int(view.idx.max()) + 1 if len(view) else 0
        self._seen = grown(self._seen, size, fill=False)
        new = np.flatnonzero(~self._seen[view.idx])
        now = view.now
        if self._start is None:
            self._start = now
        if len(new):
            self._seen[view.idx[new]] = True
            out = np.maximum(view.predicted_output(0.5)[new], 1.0)
            prompt = view.prompt_len[new].astype(np.float64)
            steps = -(-prompt // view.engine.token_budget) + out - 1.0
            work = signals.engine_seconds(view.engine, prompt, out, prompt + out / 2.0, steps)
            self._times = np.concatenate([self._times, np.full(len(new), now)])
            self._work = np.concatenate([self._work, work])
        keep = self._times > now - self.window
        self._times, self._work = self._times[keep], self._work[keep]
        span = max(min(self.window, now - self._start), self.min_span)
        return float(self._work.sum()) / span
