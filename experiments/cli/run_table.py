"""The `slosched run` result table: one row per policy (x load for a sweep), seeds averaged.

A sweep runs every policy at several loads, each with several seeds. One row per seed buries
the comparison, so rows are (policy, rate scale) with the mean over seeds and, for the headline
columns, the min-max range. CSV carries every metric as mean, min and max.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean
from typing import Any

from experiments.cli.tables import TextTable, to_csv
from experiments.config import ExperimentConfig
from experiments.runner import CellResult

CLASSES = ("latency", "throughput", "bulk")


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The numbers a table shows, one level deep (None: no request of that class)."""
    by_class = metrics["attainment_by_class"]
    flat: dict[str, float | None] = {"attainment": metrics["attainment"],
                                     **{f"attainment_{c}": by_class[c] for c in CLASSES},
                                     "mean_qoe": metrics["mean_qoe"]}
    for latency in ("ttft", "tbt", "jct"):
        flat.update({f"{latency}_{q}": metrics[latency][q] for q in ("p50", "p99")})
    flat["ttft_p90"] = metrics["ttft"].get("p90")  # absent from results stored before it existed
    flat.update({k: metrics[k] for k in ("throughput", "preemptions", "unfinished")})
    flat["prefix_hit_rate"] = metrics.get("prefix_hit_rate", 0.0)
    return flat


def caching(result: CellResult) -> str:
    """"on"/"off" for a cell of a sweep over prefix caching (its config says), else ""."""
    if not result.config.get("sweep", {}).get("prefix_caching"):
        return ""
    return "on" if result.config["engine"].get("enable_prefix_caching") else "off"


@dataclass(frozen=True)
class Stat:
    mean: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Point:
    """A policy at one rate scale: each metric's mean and range over `seeds`."""

    policy: str
    rate_scale: float
    seeds: tuple[int, ...]
    stats: dict[str, Stat]
    caching: str = ""  # prefix caching "on"/"off" in a sweep over it


def _stat(values: list[float | None]) -> Stat:
    known = [v for v in values if v is not None]
    return Stat(fmean(known), min(known), max(known)) if known else Stat(None, None, None)


def aggregate(results: list[CellResult]) -> list[Point]:
    """Results grouped by (policy, rate scale, prefix caching), in first-seen order."""
    groups: dict[tuple[str, float, str], list[CellResult]] = {}
    for r in results:
        groups.setdefault((r.policy, r.rate_scale, caching(r)), []).append(r)
    points = []
    for (policy, rate, cache), group in groups.items():
        flats = [flat_metrics(r.metrics) for r in group]
        points.append(Point(policy, rate, tuple(r.seed for r in group),
                            {k: _stat([f[k] for f in flats]) for k in flats[0]}, cache))
    return points


def _num(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _ranged(stat: Stat, scale: float, digits: int, with_range: bool) -> str:
    text = _num(stat.mean, scale, digits)
    if with_range and stat.mean is not None:
        text += f"\n({_num(stat.low, scale, digits)}-{_num(stat.high, scale, digits)})"  # second line: narrow
    return text


def _pair(point: Point, name: str, scale: float, digits: int) -> str:
    return f"{_num(point.stats[name + '_p50'].mean, scale, digits)}/{_num(point.stats[name + '_p99'].mean, scale, digits)}"


def run_table(config: ExperimentConfig, results: list[CellResult], sweep: bool) -> TextTable:
    """With prefix caching swept (or hits measured) the table adds the caching variant and the
    hit rate, and shows TTFT p50/p90/p99."""
    points = aggregate(results)
    seeds = max(len(p.seeds) for p in points)
    ranged = seeds > 1
    load = ["load\nx"] if sweep else []
    cached = any(p.caching or p.stats["prefix_hit_rate"].mean for p in points)
    cache = ["prefix\ncache"] if any(p.caching for p in points) else []
    table = TextTable(
        title=f"{config.name}: {results[0].metrics['requests']} requests, predictor {config.predictor.name}",
        headers=["policy", *load, *cache, "SLO\nall %", "latency\n%", "thrpt\n%", "bulk\n%", "mean\nQoE",
                 "TTFT s\np50/p90/p99" if cached else "TTFT s\np50/p99", "TBT ms\np50/p99", "JCT s\np50/p99",
                 "tok/s", "pre-\nempt", *(["hit\n%"] if cached else [])],
        keys=1 + len(load) + len(cache),
        notes=["SLO attainment: all requests / per class." +
               (" hit %: prefix-cache hit tokens / looked-up tokens." if cached else "") +
               (f" Mean over {seeds} seeds; below it, (min-max) over seeds for SLO all and mean QoE." if ranged else "")],
    )
    for p in points:
        s = p.stats
        ttft = _pair(p, "ttft", 1, 2)
        if cached:
            ttft = ttft.replace("/", f"/{_num(s['ttft_p90'].mean)}/", 1)
        table.rows.append([
            p.policy, *([f"{p.rate_scale:g}"] if load else []), *([p.caching] if cache else []),
            _ranged(s["attainment"], 100, 1, ranged),
            *(_num(s[f"attainment_{c}"].mean, 100, 1) for c in CLASSES),
            _ranged(s["mean_qoe"], 1, 3, ranged),
            ttft, _pair(p, "tbt", 1000, 0), _pair(p, "jct", 1, 1),
            _num(s["throughput"].mean, 1, 0), _num(s["preemptions"].mean, 1, 0 if not ranged else 1),
            *([_num(s["prefix_hit_rate"].mean, 100, 1)] if cached else []),
        ])
    return table


def run_csv(results: list[CellResult]) -> str:
    """policy, rate_scale, prefix caching ("" unless swept), seeds, then each metric's mean, min
    and max over seeds."""
    points = aggregate(results)
    names = list(points[0].stats)
    headers = ["policy", "rate_scale", "prefix_caching", "seeds",
               *(f"{n}{suffix}" for n in names for suffix in ("", "_min", "_max"))]
    rows = [[p.policy, p.rate_scale, p.caching, len(p.seeds),
             *(v for n in names for v in (p.stats[n].mean, p.stats[n].low, p.stats[n].high))] for p in points]
    return to_csv(headers, rows)
