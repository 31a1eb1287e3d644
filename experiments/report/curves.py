"""Metric-vs-load curves: mean QoE, share of requests at QoE >= threshold, SLO attainment, JCT.

Each policy is one line (mean over seeds) with a band from the lowest to the highest seed, so a
reader sees both the trend and how much it depends on the random draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from experiments.report.capacity import capacity
from experiments.report.rows import Row, curves
from experiments.report.style import plt, policy_color, save
from formulations.arithmetic import ceil_div

QOE_PANELS = (("mean_qoe", "mean QoE"), ("qoe_at_threshold", "share of requests with QoE >= {thr}"))
CLASS_PANELS = (("attainment", "overall"), ("attainment_by_class.latency", "latency"),
                ("attainment_by_class.throughput", "throughput"), ("attainment_by_class.bulk", "bulk"))


def _draw(ax: plt.Axes, rows: list[Row], metric: str) -> bool:
    drawn = False
    for c in curves(rows, metric):
        color = policy_color(c.policy)
        ax.plot(c.rate, c.mean, marker="o", ms=4, color=color, label=c.policy)
        if len({r.seed for r in rows}) > 1:  # the seed range: a shaded band with thin edges
            ax.fill_between(c.rate, c.low, c.high, color=color, alpha=0.3, linewidth=0.6, edgecolor=color)
        drawn = True
    ax.grid(alpha=0.3)
    ax.set_xlabel("offered load (requests/s)")
    return drawn


def plot_qoe_vs_rate(rows: list[Row], experiment: str, path: Path, threshold: float = 0.95) -> Path:
    """Two panels: mean QoE (with the capacity threshold and each policy's capacity marked) and
    the share of requests meeting the QoE SLO."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    _draw(ax, rows, "mean_qoe")
    ax.axhline(threshold, color="k", ls=":", lw=1)
    for k, c in enumerate(curves(rows, "mean_qoe")):
        cap = capacity(c.rate, c.mean, threshold)
        if cap.bound == "exact":
            ax.axvline(cap.rate, color=policy_color(c.policy), ls=(0, (6, 3)), lw=1.2, alpha=0.9)
            # the capacity written next to its line, staggered so labels of close lines do not overlap
            ax.text(cap.rate, 0.88 - 0.07 * k, f" {cap.rate:.3g}", color=policy_color(c.policy), fontsize=8,
                    fontweight="bold")
    ax.set_ylabel("mean QoE (0-1)")
    ax.set_title(f"Mean QoE vs load (capacity = load where mean QoE crosses {threshold})", fontsize=10)
    ax.set_ylim(-0.02, 1.02)
    ax = axes[1]
    _draw(ax, rows, "qoe_at_threshold")
    ax.set_ylabel(f"requests with QoE >= {threshold} (share)")
    ax.set_title("QoE SLO attainment vs load", fontsize=10)
    ax.set_ylim(-0.02, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], color="k", ls=":", lw=1), Line2D([], [], color="k", ls=(0, (6, 3)), lw=1.2)]
    labels += [f"mean QoE = {threshold} (dotted)", "capacity, req/s (dashed)"]
    axes[0].legend(handles, labels, title="policy", loc="lower left", fontsize=8)
    fig.suptitle(f"{experiment}: latency requests (mean over seeds; band = min-max over seeds)", fontsize=11)
    return save(fig, path)


def plot_attainment_vs_rate(rows: list[Row], experiment: str, path: Path) -> Path:
    """SLO attainment overall and per class, plus P99 JCT, vs load; classes absent are skipped."""
    panels = [(m, t) for m, t in CLASS_PANELS if any(not np.isnan(r.metric(m)) for r in rows)]
    panels.append(("jct.p99", "P99 job completion time"))
    ncols = min(len(panels), 3)
    nrows = ceil_div(len(panels), ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.8 * nrows), squeeze=False)
    axes = grid.ravel()
    for ax in axes[len(panels):]:
        ax.axis("off")
    for ax, (metric, title) in zip(axes, panels):
        _draw(ax, rows, metric)
        if metric.startswith("attainment"):
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel("SLO attainment (share of requests)")
            ax.set_title(f"attainment: {title}", fontsize=10)
        else:
            ax.set_ylabel("P99 JCT (s)")
            ax.set_ylim(bottom=0)
            ax.set_title(title, fontsize=10)
    if len(panels) < len(axes):  # an empty grid cell: put the legend there
        axes[-1].legend(*axes[0].get_legend_handles_labels(), title="policy", loc="center")
    else:
        axes[0].legend(title="policy", loc="lower left")
    fig.suptitle(f"{experiment}: SLO attainment by class vs load (mean over seeds; band = min-max)", fontsize=11)
    fig.tight_layout()
    return save(fig, path)


def plot_class_bars(rows: list[Row], experiment: str, path: Path) -> Path:
    """Per-class attainment of every policy at the highest load swept (grouped bars)."""
    top = max(r.rate_scale for r in rows)
    at_top = [r for r in rows if r.rate_scale == top]
    policies = list(dict.fromkeys(r.policy for r in at_top))
    groups = [(m, t) for m, t in CLASS_PANELS if any(not np.isnan(r.metric(m)) for r in at_top)]
    width = 0.8 / len(policies)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(groups) * max(1, len(policies)) / 3, 4))
    x = np.arange(len(groups))
    for k, policy in enumerate(policies):
        mine = [r for r in at_top if r.policy == policy]
        values = [np.nanmean([r.metric(m) for r in mine]) for m, _ in groups]
        bars = ax.bar(x + (k - (len(policies) - 1) / 2) * width, values, width, label=policy,
                      color=policy_color(policy))
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(x, [t for _, t in groups])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("SLO attainment (share of requests)")
    rate = np.mean([r.rate for r in at_top])
    ax.set_title(f"{experiment}: attainment per class at the highest load ({rate:.3g} req/s)", fontsize=10)
    ax.legend(title="policy", ncols=min(len(policies), 5), fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.1))
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)
