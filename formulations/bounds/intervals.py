"""The interval (energetic) relaxation of the hindsight problem.

Variables: one `y_u` in [0, 1] per unit (a latency or throughput request, weight 1; a bulk group,
weight its size, all or nothing). Maximize sum w_u y_u subject to, for every interval [a, b] and
resource row res in (tokens, seqs, blocks):

    sum over requests i with release_i >= a of  y_{unit(i)} * W_i,res(b)  <=  capacity(a, b)

where W_i,res(b) = sum of demand[j, res] (formulations/bounds/windows.py) over the tokens j with
latest[j] <= b. Why it is valid: if request i is met, every token with latest[j] <= b is
delivered by b, and every iteration that served it started at or after release_i >= a; so the
iterations that do that work lie inside [a, b], are disjoint in time, and last at least the
demand (windows.py); hence their total is at most b - a (slotted: tau * floor((b - a) / tau),
whole slots). A unit that cannot meet its SLO even alone (`alive` False) is fixed to 0. Any
subset of these rows still gives an upper bound, so a solver may add rows lazily and stop early.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from formulations.bounds.windows import TokenWindows, token_windows
from formulations.instance import Instance
from formulations.metrics import DEFAULT_QOE_THRESHOLD
from formulations.turns import require_open_loop

CAPACITY_SLACK = 1e-9  # relative slack on every capacity: float noise never cuts a schedule


@dataclass(frozen=True)
class IntervalRelaxation:
    weight: np.ndarray  # (units,) attainment weight
    unit: np.ndarray  # (n,) unit index of each request
    alive: np.ndarray  # (units,) False: cannot meet its SLO even alone on the engine
    windows: list[TokenWindows]  # per request
    slot_time: float | None

    @property
    def release(self) -> np.ndarray:
        return np.array([w.release for w in self.windows])

    def demand_at(self, requests: np.ndarray, b: np.ndarray) -> np.ndarray:
        """W_i,res(b) for the given requests and interval ends: shape (len(requests), len(b), 3)."""
        out = np.empty((len(requests), len(b), 3))
        for row, i in enumerate(requests.tolist()):
            w = self.windows[i]
            cum = np.vstack([np.zeros((1, 3)), np.cumsum(w.demand, axis=0)])
            out[row] = cum[np.searchsorted(w.latest, b, side="right")]
        return out

    def capacity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Longest total iteration time inside [a, b] (broadcast), +inf where b <= a (no row)."""
        length = b - a
        if self.slot_time is not None:
            length = self.slot_time * np.floor(length / self.slot_time + 1e-6)
        return np.where(length > 0, length * (1 + CAPACITY_SLACK) + CAPACITY_SLACK, np.inf)

    def interval_ends(self, requests: np.ndarray, limit: int) -> np.ndarray:
        """Candidate b values: each request's last-token latest time and, for long streams, a few
        of its intermediate ones; at most `limit`, evenly spread over the sorted candidates."""
        ends = []
        for i in requests.tolist():
            latest = self.windows[i].latest
            picks = np.unique(np.linspace(0, len(latest) - 1, min(len(latest), 5)).astype(int))
            ends.append(latest[picks])
        values = np.unique(np.concatenate(ends)) if ends else np.empty(0)
        values = values[np.isfinite(values)]
        if len(values) > limit:
            values = values[np.unique(np.linspace(0, len(values) - 1, limit).astype(int))]
        return values


def attainment_units(instance: Instance) -> tuple[np.ndarray, np.ndarray]:
    """(unit of each request, weight of each unit): a latency or throughput request is its own
    unit of weight 1, a bulk group one unit weighing its size (met all or nothing)."""
    unit = np.empty(len(instance.requests), dtype=np.int64)
    weight: list[int] = []
    group_unit: dict[int, int] = {}
    for i, g in enumerate(instance.table.group.tolist()):
        if g < 0:
            unit[i] = len(weight)
            weight.append(1)
            continue
        if g not in group_unit:
            group_unit[g] = len(weight)
            weight.append(len(instance.table.group_members[g]))
        unit[i] = group_unit[g]
    return unit, np.array(weight, dtype=np.int64)


def build_relaxation(instance: Instance, qoe_threshold: float = DEFAULT_QOE_THRESHOLD) -> IntervalRelaxation:
    require_open_loop(instance.requests, "the interval relaxation")
    windows = token_windows(instance, qoe_threshold)
    unit, weight = attainment_units(instance)
    alive = np.ones(len(weight), dtype=bool)
    for i, w in enumerate(windows):
        if not w.feasible:
            alive[unit[i]] = False
    return IntervalRelaxation(weight, unit, alive, windows, instance.engine.slot_time)
