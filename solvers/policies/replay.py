"""ReplayPolicy: make the engine follow a solver's per-iteration assignment (slotted mode).

In slot k it asks the engine to run exactly `assignment.run[k]` (in that order: full chunks and
decodes first, the one partial prefill chunk last) after preempting `assignment.preempt[k]`,
and asks to decide again at the next slot boundary. This is how the exact model is checked
against the engine: the replayed schedule must score the solver's objective exactly. A planned
request that is not live means model and engine disagree, and raises PlanError rather than
being silently skipped.

The exact model is free of vLLM's admission gate, so replay runs on an engine with it off
(`reserve_full_prompt=False`, `watermark=0`; reset() refuses others).

After the assignment's horizon (attainment can no longer change) every live request runs in
arrival order, so the run completes.
"""

from __future__ import annotations

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.exact.assignment import Assignment
from formulations.online import EngineView, Plan, PlanError, Policy


class ReplayPolicy(Policy):
    name = "replay"

    def __init__(self, assignment: Assignment) -> None:
        self.assignment = assignment

    def reset(self, engine: EngineSpec) -> None:
        if engine.slot_time is None or abs(engine.slot_time - self.assignment.slot_time) > 1e-12:
            raise PlanError(f"replay: the assignment is for slot_time={self.assignment.slot_time}, "
                            f"the engine has slot_time={engine.slot_time}")
        if engine.reserve_full_prompt or engine.watermark:
            raise PlanError("replay: the exact model admits a request when its first chunk fits (it is free of "
                            "vLLM's admission gate, formulations/exact/hindsight.py); replay on "
                            "engine.with_(reserve_full_prompt=False, watermark=0.0)")

    def decide(self, view: EngineView) -> Plan:
        tau = self.assignment.slot_time
        k = int(round(view.now / tau))
        if k >= self.assignment.horizon:
            order = np.lexsort((view.idx, view.arrival))
            return Plan(run=view.idx[order])
        live = set(view.idx.tolist())
        run = self.assignment.run[k]
        preempt = self.assignment.preempt[k]
        missing = [i for i in (*run, *preempt) if i not in live]
        if missing:
            raise PlanError(f"replay: slot {k} plans requests {missing}, which are not live at t={view.now:.6f}")
        return Plan(run=np.asarray(run, dtype=np.int64), preempt=np.asarray(preempt, dtype=np.int64),
                    recheck_at=(k + 1) * tau)
