"""`render_report(results_dir)`: every plot the data supports plus summary.md, per experiment.

What is drawn depends on what the cells hold: QoE curves and capacity when there are latency
requests, per-class curves and bars when there is more than one class, a timeline when
per-request outcomes were stored. Nothing is drawn from data that is not there.
"""

from __future__ import annotations

import math
from pathlib import Path

from experiments.report.curves import plot_attainment_vs_rate, plot_class_bars, plot_qoe_vs_rate
from experiments.report.latency_cdf import plot_latency_cdfs
from experiments.report.gap import gap_table, plot_gap_histograms, pooled, step_gap_lines
from experiments.report.rows import Row, by_experiment, load_records, with_outcomes
from experiments.report.summary import capacity_table, highest_load_table, metric_by_load_table
from experiments.report.timeline import plot_timeline

DEFAULT_THRESHOLD = 0.95


def _has(rows: list[Row], metric: str) -> bool:
    return any(math.isfinite(r.metric(metric)) for r in rows)


def _classes(rows: list[Row]) -> list[str]:
    return [c for c in ("latency", "throughput", "bulk") if _has(rows, f"attainment_by_class.{c}")]


OVERLOAD_ATTAINMENT = 0.9


def overloaded_scale(rows: list[Row]) -> float:
    """The lowest rate scale at which the first policy (the baseline) meets < 90% of SLOs: the
    first clearly overloaded load, where decisions matter (at the highest load every policy is
    swamped); the highest scale if the baseline never drops that low."""
    reference = rows[0].policy
    scales = sorted({r.rate_scale for r in rows})
    for scale in scales:
        mine = [r.metric("attainment") for r in rows if r.policy == reference and r.rate_scale == scale]
        if mine and sum(mine) / len(mine) < OVERLOAD_ATTAINMENT:
            return scale
    return scales[-1]


def _timeline_rows(results_dir: Path, rows: list[Row]) -> list[Row]:
    scale = overloaded_scale(rows)
    seed = min(r.seed for r in rows if r.rate_scale == scale)
    return [with_outcomes(results_dir, r) for r in rows if r.rate_scale == scale and r.seed == seed]


def render_report(results_dir: str | Path, out_dir: str | Path | None = None,
                  threshold: float = DEFAULT_THRESHOLD) -> list[Path]:
    """Write PNGs and summary.md into `out_dir` (default: results_dir/report); return the paths."""
    results_dir = Path(results_dir)
    out = Path(out_dir) if out_dir is not None else results_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    rows, studies = load_records(results_dir)
    written: list[Path] = []
    md = [f"# Results: `{results_dir.name}`", "",
          f"{len(rows) + len(studies)} cells. Load = offered requests/s (requests over the arrival span), "
          "mean over seeds.", ""]
    for name, mine in sorted(by_experiment(rows).items()):
        order = {p: k for k, p in enumerate(("fcfs", "edf", "sjf", "andes", "slo"))}
        mine.sort(key=lambda r: (order.get(r.policy, 99), r.policy, r.rate_scale, r.seed))
        seeds = sorted({r.seed for r in mine})
        md += [f"## {name}", "",
               f"Policies: {', '.join(dict.fromkeys(r.policy for r in mine))}; seeds: {seeds}; "
               f"rate scales: {sorted({r.rate_scale for r in mine})}; "
               f"{int(mine[0].metric('requests'))} requests per cell.", ""]
        classes = _classes(mine)
        if _has(mine, "mean_qoe"):
            path = plot_qoe_vs_rate(mine, name, out / f"{name}-qoe.png", threshold)
            written.append(path)
            md += [f"![QoE vs load]({path.name})", "", "### Capacity", "", capacity_table(mine, threshold), "",
                   "### Mean QoE (latency requests)", "", metric_by_load_table(mine, "mean_qoe", as_pct=False), "",
                   f"### Share of latency requests with QoE >= {threshold}", "",
                   metric_by_load_table(mine, "qoe_at_threshold", as_pct=True), ""]
        if len(classes) > 1:
            path = plot_attainment_vs_rate(mine, name, out / f"{name}-attainment.png")
            bars = plot_class_bars(mine, name, out / f"{name}-classes.png")
            written += [path, bars]
            md += [f"![attainment vs load]({path.name})", "", f"![attainment per class]({bars.name})", ""]
        md += ["### SLO attainment (all classes)", "", metric_by_load_table(mine, "attainment", as_pct=True), "",
               highest_load_table(mine), ""]
        timeline_rows = _timeline_rows(results_dir, mine)
        if all(r.outcomes for r in timeline_rows):
            path = plot_timeline(timeline_rows, name, out / f"{name}-timeline.png")
            written.append(path)
            md += [f"Timeline at rate scale {timeline_rows[0].rate_scale:g} ({timeline_rows[0].rate:.3g} req/s), the "
                   f"lowest load at which {timeline_rows[0].policy} meets < {OVERLOAD_ATTAINMENT:.0%} of SLOs:", "",
                   f"![timeline of the busiest moment]({path.name})", ""]
            cdf = plot_latency_cdfs(timeline_rows, name, out / f"{name}-latency-cdf.png")
            written.append(cdf)
            md += [f"![TTFT and TBT CDFs]({cdf.name})", ""]
    for name in sorted({rec["cell"]["experiment"] for rec in studies}):
        pools = pooled([rec for rec in studies if rec["cell"]["experiment"] == name])
        path = plot_gap_histograms(pools, name, out / f"{name}-gap.png")
        written.append(path)
        md += [f"## {name}: heuristics vs the hindsight optimum", "", f"![gap histograms]({path.name})", "",
               gap_table(pools), "", "Per-step knapsack (the batch choice of `slo` at each step):", "",
               *step_gap_lines(pools), ""]
    summary = out / "summary.md"
    summary.write_text("\n".join(md))
    written.append(summary)
    return written
