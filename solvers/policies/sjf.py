"""Shortest job first on the predicted remaining output.

Remaining = predicted median total output (conditioned on what was generated) minus generated
tokens. All live requests run shortest first (ties: arrival, then index); under KV pressure the
engine evicts the longest predicted jobs first.
"""

from __future__ import annotations

import numpy as np

from formulations.online import EngineView, Plan, Policy


class SJFPolicy(Policy):
    name = "sjf"

    def decide(self, view: EngineView) -> Plan:
        remaining = view.predicted_output(0.5) - view.generated
        return Plan(run=view.idx[np.lexsort((view.idx, view.arrival, remaining))])
