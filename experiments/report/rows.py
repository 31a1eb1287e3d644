"""Load a results directory into flat rows: one per finished sweep cell.

A results directory holds `cells/<key>.json` records written by the sweep store; each record
has the cell (its config: experiment name, policy, rate scale, seed) and its result (metrics,
per-request outcomes). The report works on these rows only, so every plot and table reads the
same numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.sweep.store import ResultStore


@dataclass(frozen=True)
class Row:
    """One finished cell. `rate` is the offered load in requests/s (requests / arrival span)."""

    experiment: str
    policy: str
    rate_scale: float
    rate: float
    seed: int
    metrics: dict[str, Any]
    key: str
    outcomes: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def metric(self, path: str) -> float:
        """A metric by dotted path ("mean_qoe", "attainment_by_class.bulk", "jct.p99"); nan if absent."""
        value: Any = self.metrics
        for part in path.split("."):
            if not isinstance(value, dict) or value.get(part) is None:
                return math.nan
            value = value[part]
        return float(value)


@dataclass(frozen=True)
class Curve:
    """One policy's metric vs offered rate, aggregated over seeds (mean, min, max)."""

    policy: str
    scale: np.ndarray  # rate scales, ascending
    rate: np.ndarray  # offered load (req/s) at each scale, mean over seeds
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def curves(rows: list[Row], metric: str) -> list[Curve]:
    """Per policy (in first-seen order), the metric at each rate scale averaged over seeds."""
    by_point: dict[str, dict[float, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_point[row.policy][row.rate_scale].append(row)
    out = []
    for policy, points in by_point.items():
        scales = sorted(points)
        values = [np.array([r.metric(metric) for r in points[s]]) for s in scales]
        if all(np.isnan(v).all() for v in values):
            continue
        out.append(Curve(
            policy=policy,
            scale=np.array(scales, dtype=float),
            rate=np.array([np.mean([r.rate for r in points[s]]) for s in scales]),
            mean=np.array([np.nanmean(v) if not np.isnan(v).all() else np.nan for v in values]),
            low=np.array([np.nanmin(v) if not np.isnan(v).all() else np.nan for v in values]),
            high=np.array([np.nanmax(v) if not np.isnan(v).all() else np.nan for v in values]),
        ))
    return out


def offered_rate(outcomes: list[dict[str, Any]]) -> float:
    """Requests per second over the span of arrivals (n-1 gaps over first..last arrival)."""
    arrivals = sorted(o["arrival"] for o in outcomes)
    span = arrivals[-1] - arrivals[0] if arrivals else 0.0
    return (len(arrivals) - 1) / span if span > 0 else math.nan


def by_experiment(rows: list[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row.experiment].append(row)
    return dict(groups)


def load_records(results_dir: str | Path) -> tuple[list[Row], list[dict[str, Any]]]:
    """Every stored cell of `results_dir`: experiment cells as Rows (without outcomes: they are
    big) and the raw records of study cells (`cell["study"]`, e.g. the gap study)."""
    store = ResultStore(results_dir)
    if not store.keys():
        raise FileNotFoundError(f"{results_dir}: no cell results (expected {store.cells_dir}/*.json)")
    rows, studies = [], []
    for rec in store.records():
        if "study" in rec["cell"]:
            studies.append(rec)
        else:
            rows.append(row_from_record(rec))
    return rows, studies


def load_rows(results_dir: str | Path) -> list[Row]:
    return load_records(results_dir)[0]


def with_outcomes(results_dir: str | Path, row: Row) -> Row:
    """The same row with its per-request outcomes, token times included.

    Sweeps store slim outcomes (no token times); then the cell is re-simulated from its stored
    identity, which reproduces it exactly (every random choice in a cell takes its seed).
    """
    record = ResultStore(results_dir).read(row.key)
    outcomes = record["result"].get("outcomes", [])
    if outcomes and "token_times" not in outcomes[0]:
        from experiments.sweep.cells import rerun  # the simulator loads only when needed

        record["result"] = {**record["result"], "outcomes": rerun(record["cell"]).outcomes}
    return row_from_record(record, with_outcomes=True)


def row_from_record(record: dict[str, Any], with_outcomes: bool = False) -> Row:
    cell, result = record["cell"], record["result"]
    outcomes = result.get("outcomes", [])
    return Row(
        experiment=cell["experiment"],
        policy=cell["policy"],
        rate_scale=float(cell["rate_scale"]),
        rate=offered_rate(outcomes) if outcomes else float(cell["rate_scale"]),
        seed=int(cell["seed"]),
        metrics=result["metrics"],
        key=record["key"],
        outcomes=outcomes if with_outcomes else [],
    )
