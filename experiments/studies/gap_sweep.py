"""The optimality-gap study (`slosched compare`, experiments.studies.optimality_gap) as a sweep.

A gap config (`study = "gap"`) asks for batches of random small instances, each solved exactly
in hindsight and run through every policy. One cell is one batch (a seed) at one prediction
noise level; cells run in parallel on the sweep backends and are stored like any other cell, so
an interrupted study resumes at the next unfinished batch. The per-instance results are kept,
so the report can draw the distribution of gaps, not only their means.

    name = "gap"
    study = "gap"
    [gap]
    instances = 50            # random instances per cell
    seeds = [0, 1]            # independent batches
    noise = [0.0, 0.5]        # log-normal sigma of the length predictions policies see
    time_limit = 60.0         # oracle seconds per instance
    policies = ["fcfs", "slo"]   # default: every registered policy
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.config import read_toml
from experiments.errors import ConfigError

STUDY = "gap"
TOP_KEYS = ("name", "description", "study", "gap")
GAP_KEYS = ("instances", "seeds", "noise", "time_limit", "policies")
QUICK_INSTANCES = 8
QUICK_TIME_LIMIT = 20.0


@dataclass(frozen=True)
class GapCell:
    experiment: str
    instances: int
    seed: int
    noise: float
    time_limit: float
    policies: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"study": STUDY, **dataclasses.asdict(self), "policies": list(self.policies)}


def is_study_config(path: str | Path) -> bool:
    """True for a TOML file that declares `study = "gap"` (read before the experiment loader)."""
    try:
        return read_toml(path).get("study") == STUDY
    except ConfigError:
        return False  # the experiment loader reports the problem


def load_gap_cells(path: str | Path, quick: bool = False) -> tuple[str, list[GapCell]]:
    """The experiment name and its cells (seed x noise); `quick`: one small batch, exact lengths."""
    path = Path(path)
    data = read_toml(path)
    _check_keys(data, TOP_KEYS, "config")
    gap = data.get("gap", {})
    _check_keys(gap, GAP_KEYS, "gap")
    name = str(data.get("name", path.stem)) + ("-quick" if quick else "")
    instances = gap.get("instances", 50)
    seeds = gap.get("seeds", [0])
    noise = gap.get("noise", [0.0])
    time_limit = gap.get("time_limit", 60.0)
    policies = gap.get("policies", [])
    if not isinstance(instances, int) or instances < 1:
        raise ConfigError(f"gap.instances = {instances!r}: need an integer >= 1")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"gap.seeds = {seeds!r}: need a non-empty list of integers")
    if not isinstance(noise, list) or not noise or not all(isinstance(x, int | float) and x >= 0 for x in noise):
        raise ConfigError(f"gap.noise = {noise!r}: need a non-empty list of numbers >= 0")
    if not isinstance(time_limit, int | float) or time_limit <= 0:
        raise ConfigError(f"gap.time_limit = {time_limit!r}: need a number > 0 (seconds)")
    _check_policies(policies)
    if quick:
        instances, seeds, noise = min(instances, QUICK_INSTANCES), seeds[:1], noise[:1]
        time_limit = min(time_limit, QUICK_TIME_LIMIT)
    return name, [GapCell(name, instances, s, float(x), float(time_limit), tuple(policies)) for x in noise for s in seeds]


def run_gap_cell(cell: GapCell) -> dict[str, Any]:
    """One batch of the study: per-instance results, the summary, and the per-step knapsack gaps."""
    from experiments.studies.optimality_gap import run_study

    report = run_study(cell.instances, cell.seed, policies=list(cell.policies) or None,
                       time_limit=cell.time_limit, noise=cell.noise)
    return {
        "summary": report.to_dict(),
        "instances": [dataclasses.asdict(r) for r in report.instances],
        "step_gaps": [float(g) for g in report.step_knapsack.gaps],
        "step_steps": report.step_knapsack.steps,
    }


def _check_policies(policies: Any) -> None:
    from solvers.policies.registry import POLICIES

    if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
        raise ConfigError(f"gap.policies = {policies!r}: need a list of names; valid: {', '.join(POLICIES)}")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ConfigError(f"gap.policies: unknown policy {unknown[0]!r}; valid: {', '.join(POLICIES)}")


def _check_keys(data: dict[str, Any], valid: tuple[str, ...], where: str) -> None:
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise ConfigError(f"[{where}] unknown key {unknown[0]!r}; valid: {', '.join(valid)}")
