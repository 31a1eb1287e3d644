"""Optimality-gap results: per-instance attainment / hindsight optimum, pooled over batches.

The gap of a policy on an instance is 1 - met / optimum (0 = optimal). The table gives the mean
ratio (the DESIGN target: `slo` >= 97% of the optimum on average), the worst instance and the
share of instances solved optimally; the histograms show the whole distribution per policy.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from experiments.report.style import plt, policy_color, save
from experiments.report.summary import fmt, pct, table
from formulations.arithmetic import ceil_div

GAP_BINS = np.array([0.0, 1e-9, 0.05, 0.10, 0.20, 0.30, 0.50, 1.0])
GAP_LABELS = ["0 (optimal)", "0-5%", "5-10%", "10-20%", "20-30%", "30-50%", ">= 50%"]


def ratio(met: int, optimum: int) -> float:
    """met / optimum; an optimum of 0 is matched exactly by 0."""
    return met / optimum if optimum else (1.0 if met == 0 else math.inf)


def pooled(records: list[dict[str, Any]]) -> dict[float, dict[str, Any]]:
    """Per noise level: the instances of every batch, the policies, and the per-step knapsack gaps."""
    out: dict[float, dict[str, Any]] = defaultdict(lambda: {"instances": [], "unproven": 0, "step_gaps": [],
                                                             "step_steps": 0, "batches": 0})
    for rec in records:
        noise = float(rec["cell"]["noise"])
        pool = out[noise]
        pool["instances"] += rec["result"]["instances"]
        pool["unproven"] += rec["result"]["summary"]["unproven"]
        pool["step_gaps"] += rec["result"]["step_gaps"]
        pool["step_steps"] += rec["result"]["step_steps"]
        pool["batches"] += 1
    for pool in out.values():
        pool["policies"] = list(dict.fromkeys(p for inst in pool["instances"] for p in inst["met"]))
    return dict(sorted(out.items()))


def ratios(instances: list[dict[str, Any]], policy: str) -> np.ndarray:
    return np.array([ratio(i["met"][policy], i["optimum"]) for i in instances])


def gap_table(pools: dict[float, dict[str, Any]]) -> str:
    body = []
    for noise, pool in pools.items():
        insts = pool["instances"]
        for policy in sorted(pool["policies"], key=lambda p: -ratios(insts, p).mean()):
            r = ratios(insts, policy)
            qoe = [i["qoe"][policy] / i["optimal_qoe"] for i in insts
                   if i["qoe"].get(policy) is not None and i["optimal_qoe"]]
            body.append([policy, fmt(noise), str(len(insts)), f"{r.mean():.4f}", fmt(r.min()),
                         pct(float(np.mean(r >= 1 - 1e-12))), fmt(float(np.mean(qoe))) if qoe else "-"])
    return table(["policy", "prediction noise (sigma)", "instances", "mean attainment / optimum",
                  "worst instance", "optimal on", "mean QoE / optimal QoE"], body)


def step_gap_lines(pools: dict[float, dict[str, Any]]) -> list[str]:
    lines = []
    for noise, pool in pools.items():
        gaps = np.array(pool["step_gaps"])
        if len(gaps):
            lines.append(f"- noise {fmt(noise)}: {len(gaps)} contended steps of `slo`; greedy 2-D knapsack vs exact: "
                         f"mean gap {100 * gaps.mean():.3f}%, max {100 * gaps.max():.2f}%, "
                         f"optimal on {pct(float(np.mean(gaps <= 1e-9)))} of steps")
        else:
            lines.append(f"- noise {fmt(noise)}: no contended step (everything always fit)")
        if pool["unproven"]:
            lines.append(f"  ({pool['unproven']} instance(s) not proven optimal in time: left out)")
    return lines


def plot_gap_histograms(pools: dict[float, dict[str, Any]], experiment: str, path: Path) -> Path:
    """One panel per policy: share of instances per gap bin, one bar per noise level."""
    policies = list(dict.fromkeys(p for pool in pools.values() for p in pool["policies"]))
    ncols = min(len(policies), 3)
    nrows = ceil_div(len(policies), ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(4.8 * ncols, 3.4 * nrows), squeeze=False, sharey=True)
    axes = grid.ravel()
    x = np.arange(len(GAP_LABELS))
    width = 0.8 / len(pools)
    for ax, policy in zip(axes, policies):
        for k, (noise, pool) in enumerate(pools.items()):
            gaps = 1.0 - ratios(pool["instances"], policy)
            counts, _ = np.histogram(np.clip(gaps, 0, 1), bins=GAP_BINS)
            share = counts / max(len(gaps), 1)
            alpha = 1.0 - 0.5 * k / max(len(pools) - 1, 1)
            ax.bar(x + (k - (len(pools) - 1) / 2) * width, share, width, color=policy_color(policy), alpha=alpha,
                   label=f"noise {fmt(noise)} (mean ratio {np.mean(1 - gaps):.3f})")
        ax.set_xticks(x, GAP_LABELS, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("gap: 1 - attainment / hindsight optimum", fontsize=8)
        ax.set_title(policy, fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes[len(policies):]:
        ax.axis("off")
    for row in grid:
        row[0].set_ylabel("share of instances")
    counts = ", ".join(f"{len(p['instances'])} at noise {fmt(noise)}" for noise, p in pools.items())
    fig.suptitle(f"{experiment}: gap to the hindsight optimum (proven-optimal instances: {counts})", fontsize=11)
    fig.tight_layout()
    return save(fig, path)
