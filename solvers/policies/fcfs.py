"""First come, first served: what vLLM does by default.

Running (resident) requests keep their admission order, waiting ones follow in arrival order.
Every live request is in the plan, so under KV pressure the engine's rule evicts from the end:
the most recently admitted request first, as vLLM's scheduler does.
"""

from __future__ import annotations

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, Plan, Policy
from solvers.policies.per_request import grown

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
        try:
            seq = self._admitted[idx]
        except IndexError:
            self._admitted = grown(self._admitted, int(idx.max()) + 1, fill=-1)
            seq = self._admitted[idx]
        # Admission sequence numbers: a request that became resident since the last decision gets
        # the next numbers (in arrival order, the order in which it was admitted); one that lost
        # its KV blocks forgets its number (-1). Positions from nonzero() and integer indexing:
        # far cheaper than boolean masks on a typical decision's small arrays.
        waiting = (~view.resident).nonzero()[0]
        seq[waiting] = _WAITING
        pos = (seq < 0).nonzero()[0]  # resident requests without a number
        if len(pos):
            pos = pos[np.lexsort((idx[pos], view.arrival[pos]))]
            seq[pos] = self._counter + np.arange(len(pos))
            self._counter += len(pos)
        self._admitted[idx] = seq
        self._admitted[idx[waiting]] = -1
        return Plan(run=idx[np.lexsort((idx, view.arrival, seq))])
