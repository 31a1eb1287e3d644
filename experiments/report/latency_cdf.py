"""TTFT and TBT distributions per policy (empirical CDFs) at one load.

Percentile tables hide the shape: two policies with the same P99 TTFT can differ in how many
requests waited a little. The CDFs use the cells the timeline shows (same load and seed for every
policy), so both plots describe the same run. TTFT counts from arrival; TBT pools every gap
between consecutive tokens of every request (pauses and recomputes included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from experiments.report.rows import Row
from experiments.report.style import plt, policy_color, save


def ttfts(outcomes: list[dict[str, Any]]) -> np.ndarray:
    """Seconds from arrival to the first token, for every request that got one."""
    return np.array([o["token_times"][0] - o["arrival"] for o in outcomes if o["token_times"]])


def tbts(outcomes: list[dict[str, Any]]) -> np.ndarray:
    """Every gap between consecutive tokens of a request, all requests pooled (seconds)."""
    gaps = [np.diff(o["token_times"]) for o in outcomes if len(o["token_times"]) > 1]
    return np.concatenate(gaps) if gaps else np.empty(0)


def _cdf(ax: plt.Axes, values: np.ndarray, policy: str, total: int) -> None:
    """Share of `total` at or below each value: requests that never got a token keep the curve
    below 1, so a policy cannot look good by starving requests."""
    if len(values) == 0:
        return
    xs = np.sort(values)
    ax.step(xs, np.arange(1, len(xs) + 1) / total, where="post", color=policy_color(policy), label=policy)


def plot_latency_cdfs(cells: list[Row], experiment: str, path: Path) -> Path:
    """Two panels (TTFT, TBT), one curve per policy; cells share load and seed."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for row in cells:
        _cdf(left, ttfts(row.outcomes), row.policy, total=len(row.outcomes))
        gaps = tbts(row.outcomes)
        _cdf(right, gaps, row.policy, total=max(len(gaps), 1))
    for ax, what in ((left, "time to first token (s, from arrival)"), (right, "time between tokens (s)")):
        low, high = ax.get_xlim()
        if low > 0 and high / low > 10:  # a log axis only where the values span decades
            ax.set_xscale("log")
        else:
            ax.ticklabel_format(axis="x", useOffset=False)
        ax.set_xlabel(what)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3, which="both")
    left.set_ylabel("share of requests")
    right.set_ylabel("share of token gaps")
    left.legend(title="policy", fontsize=8, loc="upper left")
    ref = cells[0]
    fig.suptitle(f"{experiment}: TTFT and TBT CDFs at {ref.rate:.3g} req/s (seed {ref.seed}; requests never "
                 "served keep a TTFT curve below 1)", fontsize=10)
    fig.tight_layout()
    return save(fig, path)
