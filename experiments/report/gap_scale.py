"""Gap vs load at realistic scale: the `slosched gap` result (GAP_FILE in a results directory).

One panel per policy: its attainment, the best-known attainment and the upper bound against the
offered load, the band between best-known and bound being where the optimum lies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.report.style import plt, policy_color, save
from formulations.arithmetic import ceil_div

GAP_FILE = "gap-at-scale.json"  # written by `slosched gap CONFIG --results DIR`


def load_gap(results_dir: Path) -> dict[str, Any] | None:
    path = results_dir / GAP_FILE
    return json.loads(path.read_text()) if path.exists() else None


def plot_gap_vs_load(data: dict[str, Any], path: Path) -> Path:
    loads = sorted(data["loads"], key=lambda g: g["rate_scale"])
    policies = list(dict.fromkeys(r["policy"] for g in loads for r in g["rows"]))
    x = [g["rate_scale"] for g in loads]
    best = [g["best_known"] / g["requests"] for g in loads]
    bound = [g["bound"]["attainment"] for g in loads]
    cols = min(4, len(policies))
    rows = ceil_div(len(policies), cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, policies, strict=False):
        mine = [next(r["attainment"] for r in g["rows"] if r["policy"] == name) for g in loads]
        ax.fill_between(x, best, bound, color="#bbbbbb", alpha=0.5, label="optimum lies here")
        ax.plot(x, bound, color="black", ls="--", lw=1, label="upper bound")
        ax.plot(x, best, color="black", lw=1, label="best-known")
        ax.plot(x, mine, color=policy_color(name), marker="o", ms=4, label=name)
        ax.set_title(name)
        ax.set_xlabel("rate scale")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(policies):]:
        ax.axis("off")
    axes[0][0].set_ylabel("SLO attainment")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{data['config']}: policies vs best-known and upper bound")
    fig.tight_layout()
    return save(fig, path)


def gap_markdown(data: dict[str, Any]) -> str:
    lines = ["| load | policy | attainment | best-known | bound | gap interval |", "|---|---|---|---|---|---|"]
    for g in sorted(data["loads"], key=lambda g: g["rate_scale"]):
        for r in g["rows"]:
            lines.append(f"| x{r['rate_scale']:g} | {r['policy']} | {r['attainment']:.1%} | {r['best_known']:.1%} | "
                         f"{r['bound']:.1%} | [{r['gap_low']:.1%}, {r['gap_high']:.1%}] |")
    return "\n".join(lines)
