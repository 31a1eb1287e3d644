"""The units of attainment (a request, or a bulk group all or nothing) of a compact model, and the
facts about sets of them that a decomposition over "which units are met" rests on.

In the compact regime (formulations/exact/compact.py) a met unit runs only inside its slot
window and an unmet one never runs (dominance 2). Hence, for a set S of units "all of S met":

- is monotone: if S can be met, so can every subset (drop the others: their KV, sequences and
  tokens only go away);
- splits into independent parts: units whose windows share no slot never hold KV or a sequence
  in the same slot, so S can be met iff each connected part of S's window-overlap graph can;
- is invariant under swapping interchangeable requests (same class, arrival, lengths and SLO:
  formulations/exact/hindsight.interchangeable_requests), so a set that cannot be met stays so
  with one of them swapped for its twin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from formulations.bounds.intervals import attainment_units
from formulations.exact.hindsight import HindsightModel, interchangeable_requests


@dataclass(frozen=True)
class MetUnits:
    weight: np.ndarray  # (units,) attainment weight (the interval relaxation's unit order)
    unit: np.ndarray  # (requests,) unit of each request
    key: list[str]  # per unit: the compact model's met key ("r:<id>" or "g:<group>")
    window: list[tuple[int, int]]  # per unit: first and last slot any member may run ((0, -1): none)
    alive: np.ndarray  # (units,) False: the compact model rules it out alone
    twins: list[list[int]]  # classes of interchangeable units, each in index order

    @property
    def count(self) -> int:
        return len(self.weight)

    def requests(self, units) -> frozenset[int]:
        wanted = set(units)
        return frozenset(i for i, u in enumerate(self.unit.tolist()) if u in wanted)

    def total(self, units) -> int:
        return int(sum(self.weight[u] for u in units))

    def components(self, units) -> list[frozenset[int]]:
        """The connected parts of `units` under window overlap (each can be checked alone)."""
        parts: list[set[int]] = []
        reach = -1
        for u in sorted(units, key=lambda u: self.window[u]):
            start, end = self.window[u]
            if not parts or start > reach:
                parts.append(set())
            parts[-1].add(u)
            reach = max(reach, end)
        return [frozenset(p) for p in parts]

    def canonical(self, units) -> frozenset[int]:
        """The same set with each class of twins replaced by its first members (as many)."""
        out = set(units)
        for cls in self.twins:
            k = len(out.intersection(cls))
            out.difference_update(cls)
            out.update(cls[:k])
        return frozenset(out)


def met_units(hm: HindsightModel) -> MetUnits:
    if hm.kind != "compact":
        raise ValueError("met units need the compact model (met units run only inside their windows)")
    unit, weight = attainment_units(hm.instance)
    count = len(weight)
    key = [""] * count
    lo, hi = [None] * count, [None] * count
    for i, r in enumerate(hm.instance.requests):
        u = int(unit[i])
        key[u] = f"g:{r.group}" if r.group is not None else f"r:{r.id}"
        v = hm.req[i]
        if v.x:
            lo[u] = v.start if lo[u] is None else min(lo[u], v.start)
            end = v.start + len(v.x) - 1
            hi[u] = end if hi[u] is None else max(hi[u], end)
    alive = np.array([hm.model.ub[hm.met[k]] != 0 and lo[u] is not None for u, k in enumerate(key)])
    window = [(lo[u], hi[u]) if alive[u] else (0, -1) for u in range(count)]
    twins = [[int(unit[i]) for i in cls] for cls in interchangeable_requests(hm.instance)]
    return MetUnits(weight, unit, key, window, alive, twins)
