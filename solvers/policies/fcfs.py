"""First come, first served: what vLLM does by default.

Running (resident) requests keep their admission order, waiting ones follow in arrival order.
Every live request is in the plan, so under KV pressure the engine's rule evicts from the end:
the most recently admitted request first, as vLLM's scheduler does.
"""

from __future__ import annotations

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, Plan, Policy

_WAITING = np.iinfo(np.int64).max


class FCFSPolicy(Policy):
    name = "fcfs"

    def __init__(self) -> None:
        self._admitted = np.full(0, -1, dtype=np.int64)
        self._counter = 0

    def reset(self, engine: EngineSpec) -> None:
        self._admitted = np.full(1024, -1, dtype=np.int64)
        self._counter = 0

    def decide(self, view: EngineView) -> Plan:
        idx = view.idx
        if len(idx) == 0:
            return Plan(run=idx)
        top = int(idx.max())
        if top >= len(self._admitted):
            grown = np.full(max(2 * len(self._admitted), top + 1), -1, dtype=np.int64)
            grown[: len(self._admitted)] = self._admitted
            self._admitted = grown
        # Admission sequence numbers: a request that became resident since the last decision gets
        # the next numbers (in arrival order, the order in which it was admitted); one that lost
        # its KV blocks forgets its number.
        seq = np.where(view.resident, self._admitted[idx], -1)
        new = view.resident & (seq < 0)
        if new.any():
            pos = np.flatnonzero(new)
            pos = pos[np.lexsort((idx[pos], view.arrival[pos]))]
            seq[pos] = self._counter + np.arange(len(pos))
            self._counter += len(pos)
        self._admitted[idx] = seq
        key = np.where(view.resident, seq, _WAITING)
        return Plan(run=idx[np.lexsort((idx, view.arrival, key))])
