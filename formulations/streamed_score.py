"""Scoring a run one request at a time, as the engine hands each final timeline over.

The engine's `on_done` calls `add`; the outcome is scored at once (a bulk member waits for the
rest of its group: the group's verdict is all or nothing), handed to `emit(index, outcome)` (e.g. a
schedule file writer) and reduced to a row of `OutcomeColumns` plus its token gaps on disk, then dropped. The
metrics are the same floats `summarize` gives on the whole list of outcomes
(tests/test_streamed_score.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from formulations.instance import Instance
from formulations.metrics import Metrics, OutcomeColumns, RequestOutcome, group_verdict, score_request, sent_at
from formulations.requests import RequestClass
from formulations.schedule import RequestTimeline
from formulations.spilled_values import SpilledValues


class StreamedScore:
    def __init__(self, instance: Instance, qoe_threshold: float,
                 emit: Callable[[int, RequestOutcome], None] | None = None, spill_dir: Path | None = None) -> None:
        n = len(instance.requests)
        self.instance = instance
        self.qoe_threshold = qoe_threshold
        self.emit = emit
        self.columns = OutcomeColumns(n)
        self.gaps = SpilledValues(n, spill_dir)
        self.scored = 0
        self._groups: dict[str, list[tuple[int, RequestTimeline]]] = {}  # bulk members waiting for their group
        # a conversation's turns: the finish of each previous turn scored so far, and later turns
        # handed over before their previous one (kept until it is)
        after = instance.table.after
        self._previous = set(after[after >= 0].tolist())
        self._finish_of: dict[int, float | None] = {}
        self._turns_waiting: dict[int, list[tuple[int, RequestTimeline]]] = {}

    def add(self, index: int, timeline: RequestTimeline) -> None:
        """Request `index`'s final timeline (its token times may be a view: used during the call only)."""
        req = self.instance.requests[index]
        if req.after is not None:  # a later turn is judged from its previous turn's finish
            previous = self.instance.index[req.after]
            if previous not in self._finish_of:  # (only at the end of a run: both never finished)
                self._turns_waiting.setdefault(previous, []).append((index, _kept(timeline)))
                return
            self._record(index, timeline, None)
            return
        if req.cls is not RequestClass.BULK:
            self._record(index, timeline, None)
            return
        waiting = self._groups.setdefault(req.group, [])
        waiting.append((index, _kept(timeline)))
        if len(waiting) == len(self.instance.group_by_id[req.group].members):
            met = group_verdict(self.instance, req.group, [tl for _, tl in waiting])
            for i, tl in waiting:
                self._record(i, tl, met)
            del self._groups[req.group]

    def metrics(self) -> Metrics:
        """The run's metrics; every request must have been added."""
        if self.scored != len(self.instance.requests) or self._groups or self._turns_waiting:
            raise ValueError(f"{self.scored} of {len(self.instance.requests)} requests scored")
        try:
            return self.columns.metrics(self.gaps.percentiles(), self.qoe_threshold)
        finally:
            self.gaps.close()

    def _record(self, index: int, timeline: RequestTimeline, group_met: bool | None) -> None:
        req = self.instance.requests[index]
        sent = req.arrival if req.after is None else sent_at(self.instance, req, self._finish_of[self.instance.index[req.after]])
        outcome = score_request(self.instance, req, timeline, self.qoe_threshold, group_met, token_lists=False,
                                sent=sent)
        self.columns.set(index, outcome)
        if outcome.finish is not None:
            self.gaps.add(index, np.diff(outcome.token_times))
        if self.emit is not None:
            self.emit(index, outcome)
        self.scored += 1
        if index in self._previous:
            self._finish_of[index] = timeline.finish
            for later, kept in self._turns_waiting.pop(index, []):
                self._record(later, kept, None)


def _kept(timeline: RequestTimeline) -> RequestTimeline:
    """The timeline with its own copy of the token times (the engine's may be a view it reuses)."""
    return dataclasses.replace(timeline, token_times=np.array(timeline.token_times, dtype=np.float64))
