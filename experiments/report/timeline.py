"""A per-request timeline of one overloaded moment: who got tokens and who waited.

The moment is the time at which the most requests were in the system under the reference
policy (the first policy, normally fcfs) at one overloaded load; every policy is drawn on the same
requests and the same time window, one panel each, so the panels differ only by the decisions.
A request is "streaming" while consecutive tokens arrive less than `gap` seconds apart, and
"waiting" from its release until its finish otherwise (queued, paused or preempted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from experiments.report.rows import Row
from experiments.report.style import CLASS_COLORS, plt, save
from formulations.arithmetic import ceil_div

MAX_REQUESTS = 20
WAIT_COLOR = "#d9d9d9"


@dataclass(frozen=True)
class Moment:
    time: float
    in_system: int
    start: float
    end: float


def busiest_moment(outcomes: list[dict[str, Any]], half_window: float) -> Moment:
    """The arrival time at which the most requests had been released and were not finished."""
    outcomes = [o for o in outcomes if o["release"] is not None]  # never released: never in the system
    release = np.array([o["release"] for o in outcomes])
    finish = np.array([np.inf if o["finish"] is None else o["finish"] for o in outcomes])
    times = np.sort(release)
    # in system at t: released at or before t and not finished by t
    counts = np.searchsorted(times, times, side="right") - np.searchsorted(np.sort(finish), times, side="right")
    k = int(np.argmax(counts))
    t = float(times[k])
    return Moment(time=t, in_system=int(counts[k]), start=max(t - half_window, float(times[0])), end=t + half_window)


def pick_requests(outcomes: list[dict[str, Any]], moment: Moment, limit: int = MAX_REQUESTS) -> list[str]:
    """Requests released in [start, moment] (the ones competing at that moment), at most `limit`,
    evenly spaced in release order."""
    chosen = sorted((o for o in outcomes if o["release"] is not None and moment.start <= o["release"] <= moment.time),
                    key=lambda o: o["release"])
    if len(chosen) > limit:
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, limit).round().astype(int)]
    return [o["id"] for o in chosen]


def streaming_spans(token_times: np.ndarray, gap: float) -> list[tuple[float, float]]:
    """Maximal runs of tokens closer than `gap` seconds, as (first, last) times."""
    if len(token_times) == 0:
        return []
    breaks = np.flatnonzero(np.diff(token_times) > gap)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(token_times) - 1]))
    return [(float(token_times[s]), float(token_times[e])) for s, e in zip(starts, ends, strict=True)]


def plot_timeline(cells: list[Row], experiment: str, path: Path, half_window: float = 15.0) -> Path:
    """One panel per cell (one per policy: same load and seed), sharing requests and window; the
    first cell is the reference whose busiest moment is shown."""
    reference = cells[0]
    seed = reference.seed
    moment = busiest_moment(reference.outcomes, half_window)
    ids = pick_requests(reference.outcomes, moment)
    # at most 4 panels a row and 0.2 inch a request: 7 policies stay about 2,200 x 1,300 px
    ncols = min(len(cells), 4)
    nrows = ceil_div(len(cells), ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, nrows * (1.0 + 0.2 * len(ids))), sharey=True,
                             squeeze=False)
    for ax in axes.ravel()[len(cells):]:
        ax.axis("off")
    for ax, row in zip(axes.ravel(), cells):
        by_id = {o["id"]: o for o in row.outcomes}
        tbt = row.metric("tbt.p50")
        gap = 3 * tbt if np.isfinite(tbt) and tbt > 0 else 0.5
        for y, rid in enumerate(ids):
            o = by_id[rid]
            finish = o["finish"] if o["finish"] is not None else moment.end
            ax.plot([o["release"], min(finish, moment.end)], [y, y], color=WAIT_COLOR, lw=6, solid_capstyle="butt")
            for a, b in streaming_spans(np.asarray(o["token_times"]), gap):
                if b >= moment.start and a <= moment.end:
                    ax.plot([a, max(b, a + 0.05)], [y, y], color=CLASS_COLORS.get(o["class"], "k"), lw=6,
                            solid_capstyle="butt")
            ax.plot(o["arrival"], y, marker="|", color="k", ms=9)
            if o["finish"] is not None and o["finish"] <= moment.end:
                ax.plot(o["finish"], y, marker="x", color="k", ms=5)
            # QoE rounded down, so a request just under the threshold never reads as meeting it
            label = f"QoE {math.floor(o['qoe'] * 100) / 100:.2f}" if o.get("qoe") is not None else (
                "met" if o["slo_met"] else "missed")
            ax.text(1.01, y, label, transform=ax.get_yaxis_transform(), fontsize=7, va="center",
                    color="k" if o["slo_met"] else "#d62728")
        ax.axvline(moment.time, color="k", ls=":", lw=1)
        ax.set_xlim(moment.start, moment.end)
        ax.set_title(f"{row.policy}  ({row.rate:.3g} req/s)", fontsize=10)
        ax.set_xlabel("time (s)")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(ids)), ids, fontsize=7)  # shared by every panel
    axes[0][0].invert_yaxis()
    for ax_row in axes:
        ax_row[0].set_ylabel("request (by release time)")
        ax_row[0].tick_params(axis="y", labelsize=7)
    classes = sorted({by["class"] for by in reference.outcomes if by["id"] in set(ids)})
    handles = [Patch(color=WAIT_COLOR, label="in system, no token (queued/paused/preempted)")]
    handles += [Patch(color=CLASS_COLORS[c], label=f"streaming tokens ({c})") for c in classes if c in CLASS_COLORS]
    handles += [Line2D([], [], marker="|", color="k", ls="", label="arrival"),
                Line2D([], [], marker="x", color="k", ls="", label="finished"),
                Line2D([], [], color="k", ls=":", label=f"busiest moment ({moment.in_system} in system)")]
    fig.legend(handles=handles, loc="lower center", ncols=3, fontsize=8, bbox_to_anchor=(0.5, -0.02 - 1.2 / (3 + len(ids))))
    fig.suptitle(f"{experiment}: who ran and who waited at the busiest moment (seed {seed}; right: each request's"
                 " QoE or SLO verdict, red = missed)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # leave room for the title
    return save(fig, path)
