"""First come, first served: what vLLM does by default.

Running (resident) requests keep their admission order, waiting ones follow in arrival order.
Every live request is in the plan, so under KV pressure the engine's rule evicts from the end:
the most recently admitted request first, as vLLM's scheduler does.
"""

from __future__ import annotations

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, Plan, Policy

_NONE = np.iinfo(np.int64).max  # no admission number: waiting, or resident but not yet numbered


class FCFSPolicy(Policy):
    name = "fcfs"

    def __init__(self) -> None:
        self._admitted = np.full(0, _NONE, dtype=np.int64)
        self._counter = 0

    def reset(self, engine: EngineSpec) -> None:
        self._admitted = np.full(1024, _NONE, dtype=np.int64)
        self._counter = 0

    def decide(self, view: EngineView) -> Plan:
        idx = view.idx
        if len(idx) == 0:
            return Plan(run=idx)
        try:
            admitted = self._admitted[idx]
        except IndexError:
            grown = np.full(max(2 * len(self._admitted), int(idx.max()) + 1), _NONE, dtype=np.int64)
            grown[: len(self._admitted)] = self._admitted
            self._admitted = grown
            admitted = self._admitted[idx]
        # Admission sequence numbers: a request that became resident since the last decision gets
        # the next numbers (in arrival order, the order in which it was admitted); one that lost
        # its KV blocks forgets its number. Waiting requests sort last (key _NONE), by arrival.
        resident = view.resident
        seq = np.where(resident, admitted, _NONE)
        new = np.flatnonzero(resident & (seq == _NONE))
        if len(new):
            seq[new[np.lexsort((idx[new], view.arrival[new]))]] = self._counter + np.arange(len(new))
            self._counter += len(new)
        self._admitted[idx] = seq
        return Plan(run=idx[np.lexsort((idx, view.arrival, seq))])
