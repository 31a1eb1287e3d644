"""Scoring a run one request at a time, as the engine hands each final timeline over.

The engine's `on_done` calls `add`; the outcome is scored at once (a bulk member waits for the
rest of its group: the group's verdict is all or nothing), handed to `emit(index, outcome)` (e.g. a
schedule file writer) and reduced to a row of `OutcomeColumns` plus its token gaps on disk, then dropped. The
metrics are the same floats `summarize` gives on the whole list of outcomes
(tests/test_streamed_score.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from formulations.instance import Instance
from formulations.metrics import Metrics, OutcomeColumns, RequestOutcome, group_verdict, score_request
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

    def add(self, index: int, timeline: RequestTimeline) -> None:
        """Request `index`'s final timeline (its token times may be a view: used during the call only)."""
        req = self.instance.requests[index]
        if req.cls is not RequestClass.BULK:
            self._record(index, timeline, None)
            return
        waiting = self._groups.setdefault(req.group, [])
        waiting.append((index, RequestTimeline(timeline.request_id, timeline.release,
                                               np.array(timeline.token_times, dtype=np.float64),
                                               timeline.admissions, timeline.preemptions, timeline.finish,
                                               timeline.rejected)))
        if len(waiting) == len(self.instance.group_by_id[req.group].members):
            met = group_verdict(self.instance, req.group, [tl for _, tl in waiting])
            for i, tl in waiting:
                self._record(i, tl, met)
            del self._groups[req.group]

    def metrics(self) -> Metrics:
        """The run's metrics; every request must have been added."""
        if self.scored != len(self.instance.requests) or self._groups:
            raise ValueError(f"{self.scored} of {len(self.instance.requests)} requests scored")
        try:
            return self.columns.metrics(self.gaps.percentiles(), self.qoe_threshold)
        finally:
            self.gaps.close()

    def _record(self, index: int, timeline: RequestTimeline, group_met: bool | None) -> None:
        req = self.instance.requests[index]
        outcome = score_request(self.instance, req, timeline, self.qoe_threshold, group_met, token_lists=False)
        self.columns.set(index, outcome)
        if outcome.finish is not None:
            self.gaps.add(index, np.diff(outcome.token_times))
        if self.emit is not None:
            self.emit(index, outcome)
        self.scored += 1
