"""GiveUpPolicy: another policy, with a fixed set of requests given up on.

The window search (solvers/search/windows.py) looks for schedules that meet more SLOs than a
policy; the requests its plans do not serve are given up, so the engine is not spent on them. A given-up
request is hidden from the inner policy and runs only when the inner policy runs nothing (so
every run still completes) and is preempted as soon as it does (the engine never evicts a
resident for a waiting request, so a given-up resident would otherwise block admissions).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, Plan, Policy


class GiveUpPolicy(Policy):
    def __init__(self, inner: Policy, given_up: np.ndarray) -> None:
        self.inner = inner
        self.given_up = np.asarray(given_up, dtype=np.int64)
        self.name = f"{inner.name}+give-up"

    def reset(self, engine: EngineSpec) -> None:
        self.inner.reset(engine)

    def decide(self, view: EngineView) -> Plan:
        out = np.isin(view.idx, self.given_up)
        if not out.any():
            return self.inner.decide(view)
        plan = self.inner.decide(restrict(view, ~out)) if not out.all() else Plan(run=np.empty(0, dtype=np.int64))
        if len(plan.run):  # given-up residents yield their KV (a waiting request never evicts them)
            evict = view.idx[out & view.resident]
            return Plan(run=plan.run, preempt=np.concatenate([plan.preempt, evict]).astype(np.int64),
                        recheck_at=plan.recheck_at)
        idle = np.flatnonzero(out & ~np.isin(view.idx, plan.preempt))
        return Plan(run=view.idx[idle[np.lexsort((view.idx[idle], view.arrival[idle]))]], preempt=plan.preempt,
                    recheck_at=plan.recheck_at)


def restrict(view: EngineView, keep: np.ndarray) -> EngineView:
    """The same snapshot with only the live requests where `keep` is True."""
    n = len(view)
    values = {}
    for f in fields(view):
        value = getattr(view, f.name)
        values[f.name] = value[keep] if isinstance(value, np.ndarray) and value.ndim and len(value) == n else value
    return EngineView(**values)
