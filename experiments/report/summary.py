"""The markdown summary: headline figures and the tables behind every plot.

Headline figures are the ones the papers report: capacity at mean QoE >= threshold relative to
fcfs (Andes), and SLO attainment relative to the best baseline at the highest load (Tempo).
"""

from __future__ import annotations

import math

import numpy as np

from experiments.report.capacity import Capacity, capacity
from experiments.report.rows import Row, curves

BASELINES = ("fcfs", "edf", "sjf")
CLASS_METRICS = (("attainment", "overall"), ("attainment_by_class.latency", "latency"),
                 ("attainment_by_class.throughput", "throughput"), ("attainment_by_class.bulk", "bulk"))


def fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def pct(value: float) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def capacities(rows: list[Row], threshold: float) -> dict[str, Capacity]:
    return {c.policy: capacity(c.rate, c.mean, threshold) for c in curves(rows, "mean_qoe")}


def capacity_table(rows: list[Row], threshold: float) -> str:
    caps = capacities(rows, threshold)
    base = caps.get("fcfs")
    body = []
    for policy, cap in caps.items():
        ratio = cap.rate / base.rate if base is not None and base.bound == "exact" and cap.bound == "exact" else math.nan
        ratio_text = fmt(ratio) + "x" if math.isfinite(ratio) else ("-" if base is None else _bounded_ratio(cap, base))
        body.append([policy, cap.label(), ratio_text])
    return table(["policy", f"capacity (req/s at mean QoE >= {threshold})", "vs fcfs"], body)


def _bounded_ratio(cap: Capacity, base: Capacity) -> str:
    """A ratio when one side is only a bound: say so instead of printing a wrong number."""
    if cap.bound == "above" and base.bound in ("exact", "below"):
        return f">= {cap.rate / base.rate:.3g}x"
    if cap.bound == "below" and base.bound in ("exact", "above"):
        return f"< {cap.rate / base.rate:.3g}x"
    return "n/a (both bounds)"


def metric_by_load_table(rows: list[Row], metric: str, as_pct: bool) -> str:
    cs = curves(rows, metric)
    if not cs:
        return ""
    show = pct if as_pct else fmt
    body = []
    for scale in sorted({r.rate_scale for r in rows}):
        rate = np.mean([r.rate for r in rows if r.rate_scale == scale])
        cells = [show(float(c.mean[c.scale == scale][0])) if (c.scale == scale).any() else "-" for c in cs]
        body.append([fmt(rate), fmt(scale), *cells])
    return table(["load (req/s)", "rate scale", *[c.policy for c in cs]], body)


def seed_mean(rows: list[Row], metric: str) -> float:
    """Mean of a metric over the given rows (seeds), ignoring cells where it is undefined."""
    values = np.array([r.metric(metric) for r in rows])
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else math.nan


def highest_load_table(rows: list[Row]) -> str:
    """Per policy at the highest load: attainment overall and per class, QoE, JCT; vs best baseline."""
    top = max(r.rate_scale for r in rows)
    at_top = [r for r in rows if r.rate_scale == top]
    policies = list(dict.fromkeys(r.policy for r in at_top))
    metrics = [m for m, _ in CLASS_METRICS] + ["mean_qoe", "jct.mean", "jct.p99"]
    mean = {p: {m: seed_mean([r for r in at_top if r.policy == p], m) for m in metrics} for p in policies}
    classes = [(m, t) for m, t in CLASS_METRICS if any(math.isfinite(mean[p][m]) for p in policies)]
    baselines = [p for p in policies if p in BASELINES]
    best = max(baselines, key=lambda p: mean[p]["attainment"]) if baselines else None
    body = []
    for p in policies:
        ratio = mean[p]["attainment"] / mean[best]["attainment"] if best and mean[best]["attainment"] > 0 else math.nan
        body.append([p, *[pct(mean[p][m]) for m, _ in classes], fmt(mean[p]["mean_qoe"]), fmt(mean[p]["jct.mean"]),
                     fmt(mean[p]["jct.p99"]), fmt(ratio) + "x" if math.isfinite(ratio) else "-"])
    header = ["policy", *[f"attainment {t}" for _, t in classes], "mean QoE", "mean JCT (s)", "P99 JCT (s)",
              f"attainment vs best baseline ({best})" if best else "vs best baseline"]
    rate = np.mean([r.rate for r in at_top])
    return f"At the highest load ({fmt(rate)} req/s, rate scale {fmt(top)}):\n\n" + table(header, body)
