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

from formulations.online import EngineView, quantile_column
from solvers.compiled import kernel
from solvers.policies import signals
from solvers.policies.per_request import index_bound


class OfferedLoad:
    def __init__(self, window: float = 20.0, min_span: float = 5.0) -> None:
        self.window = window  # s
        self.min_span = min_span  # s: early on, divide by at least this (few arrivals seen: noisy)
        self.clear()

    def clear(self) -> None:
        self._seen = np.zeros(0, dtype=bool)  # per request index
        # the window's arrivals, oldest first, in [_state[HEAD], _state[TAIL]) of two parallel
        # arrays: when each was first seen (s) and its engine seconds
        self._seen_at = np.zeros(64)
        self._work = np.zeros(64)
        self._state = np.zeros(3)  # HEAD, TAIL (as floats), TOTAL: engine seconds in the window
        self._start: float | None = None

    def update(self, view: EngineView) -> float:
        """Record the requests seen for the first time; the load over the window.

        Work is added when a request is first seen and dropped when it leaves the window, so a
        decision costs the new arrivals, not the whole window: one compiled call, which also
        grows and compacts the arrays (each numpy call and each step of a queue kept in Python
        cost more than the arithmetic)."""
        now = view.now
        if self._start is None:
            self._start = now
        total, self._seen, self._seen_at, self._work = _update(
            self._seen, view.idx, view.pred_quantiles, quantile_column(tuple(view.quantile_levels), 0.5),
            view.prompt_len, signals.engine_costs(view.engine), view.engine.token_budget, self._seen_at, self._work,
            self._state, float(now), float(now - self.window))
        span = max(min(self.window, now - self._start), self.min_span)
        return total / span


HEAD, TAIL, TOTAL = 0, 1, 2


@kernel
def _update(seen, idx, pred, column, prompt_len, costs, budget, seen_at, work, state, now, horizon):
    """Append the engine seconds of each live request not seen before (`_first_seen_work`, its
    median predicted length from `pred`'s `column`), drop the arrivals seen at or before
    `horizon`, and return the engine seconds left in the window (`state` updated in place) with
    the arrays, grown (`seen`: doubling, as per_request.grown) or compacted (the window's arrivals
    moved to the front, room for every live request being new) when they lack room. The total
    gains the new arrivals' sum and loses each dropped one, in that order; an empty window resets
    it to 0 (no rounding drift survives)."""
    bound = index_bound(idx)
    if bound > len(seen):
        more = np.zeros(max(bound, 2 * len(seen)), dtype=np.bool_)
        more[:len(seen)] = seen
        seen = more
    head, tail, total = int(state[HEAD]), int(state[TAIL]), state[TOTAL]
    if tail + len(idx) > len(work):
        size = max(2 * (tail - head + len(idx)), 64)
        kept_at, kept_work = np.zeros(size), np.zeros(size)
        kept_at[:tail - head] = seen_at[head:tail]
        kept_work[:tail - head] = work[head:tail]
        seen_at, work, head, tail = kept_at, kept_work, 0, tail - head
    new = _first_seen_work(seen, idx, pred[:, column], prompt_len, costs, budget)
    if len(new):
        added = 0.0
        for k in range(len(new)):
            seen_at[tail + k] = now
            work[tail + k] = new[k]
            added += new[k]
        tail += len(new)
        total += added
    while head < tail and seen_at[head] <= horizon:
        total -= work[head]
        head += 1
    if head == tail:
        total = 0.0
    state[HEAD], state[TAIL], state[TOTAL] = head, tail, total
    return total, seen, seen_at, work


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
