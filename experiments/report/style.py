"""Shared plot style: the Agg backend (no display needed), one colour per policy everywhere."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

POLICY_COLORS = {"fcfs": "#7f7f7f", "edf": "#1f77b4", "sjf": "#9467bd", "andes": "#ff7f0e", "slo": "#2ca02c",
                 "oracle": "#000000"}
CLASS_COLORS = {"latency": "#1f77b4", "throughput": "#ff7f0e", "bulk": "#2ca02c"}
_EXTRA = ["#d62728", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
DPI = 120


def policy_color(policy: str) -> str:
    if policy not in POLICY_COLORS:
        POLICY_COLORS[policy] = _EXTRA[(len(POLICY_COLORS) - 6) % len(_EXTRA)]
    return POLICY_COLORS[policy]


def save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path
