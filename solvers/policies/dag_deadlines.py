"""Per-member deadlines of a bulk group, derived from the group deadline along its DAG.

A group meets its SLO only if its last member finishes by the group deadline D. Walking the DAG
backwards with predicted member durations gives each member's latest finish time (the classic
critical-path "late finish"): LF(v) = D for sinks, LF(v) = min over children c of LF(c) - dur(c).
A member finishing after LF(v) makes the group late if the rest runs at its predicted speed, so
the mixed-SLO policy treats LF(v) like a throughput request's deadline.

The DAG's topological order is computed once per group with networkx and cached; the latest
finish times are recomputed only when the group's set of finished members changes (durations of
members that have not started do not change in between).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from formulations.online import GroupState


def latest_finish(order: list[int], children: list[list[int]], durations: np.ndarray, deadline: float) -> np.ndarray:
    """LF per member position (positions index `durations`), walking `order` backwards.

    `durations` may have extra columns (e.g. conservative and optimistic estimates): each column
    gets its own latest finish times.
    """
    lf = np.full(np.shape(durations), deadline, dtype=np.float64)
    for pos in reversed(order):
        for child in children[pos]:
            lf[pos] = np.minimum(lf[pos], lf[child] - durations[child])
    return lf


@dataclass
class _GroupPlan:
    order: list[int]  # member positions in topological order
    children: list[list[int]]  # per position: child positions
    done_key: bytes = b""
    lf: np.ndarray | None = None


class GroupDeadlines:
    """Caches each group's topology and latest finish times across decisions (reset per run)."""

    def __init__(self) -> None:
        self._plans: dict[str, _GroupPlan] = {}

    def clear(self) -> None:
        self._plans.clear()

    def _plan(self, group: GroupState) -> _GroupPlan:
        plan = self._plans.get(group.id)
        if plan is None:
            position = {int(m): k for k, m in enumerate(group.members)}
            graph = nx.DiGraph()
            graph.add_nodes_from(range(len(group.members)))
            children: list[list[int]] = [[] for _ in group.members]
            for k, parents in enumerate(group.parents):
                for p in parents:
                    graph.add_edge(position[int(p)], k)
                    children[position[int(p)]].append(k)
            plan = _GroupPlan(order=list(nx.topological_sort(graph)), children=children)
            self._plans[group.id] = plan
        return plan

    def member_deadlines(self, group: GroupState, durations: np.ndarray) -> np.ndarray:
        """Latest finish time of every member (aligned with group.members).

        `durations[k]`: predicted time member k still needs (0 for finished members). The result
        is cached until a member finishes.
        """
        plan = self._plan(group)
        key = np.asarray(group.done, dtype=bool).tobytes()
        if plan.lf is None or key != plan.done_key:
            plan.lf = latest_finish(plan.order, plan.children, np.asarray(durations, dtype=np.float64), group.deadline)
            plan.done_key = key
        return plan.lf
