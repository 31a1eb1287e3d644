"""Earliest deadline first.

A latency request's deadline is the ideal time of its next token,
arrival + ttft_target + generated / read_rate; a throughput request has its own deadline and a
bulk member its group's. All live requests run in that order (ties: arrival, then index), so
under KV pressure the engine evicts the latest deadlines first.
"""

from __future__ import annotations

import numpy as np

from formulations.online import EngineView, Plan, Policy


class EDFPolicy(Policy):
    name = "edf"

    def decide(self, view: EngineView) -> Plan:
        latency = view.cls == 0
        next_token = view.arrival + view.ttft_target + view.generated / view.read_rate
        deadline = np.where(latency, next_token, view.deadline)
        return Plan(run=view.idx[np.lexsort((view.idx, view.arrival, deadline))])
