"""Experiment cells (experiments.runner) as sweep cells: identity, slim results, re-running.

A cell's identity is what determines its result: the experiment's workload, engine and
predictor, the one policy with its parameters, the rate scale and the seed. The config's sweep
grid, its other policies and its description are left out on purpose, so extending a sweep
(one more rate, one more policy, another seed) reuses every cell already computed.

Stored results are slim: per-request outcomes keep every scalar (arrival, first token, finish,
QoE, verdict, ...) but not the token times, which are ~95% of a full result (about 10 MB for
2,000 requests). A cell is deterministic, so `rerun(identity)` reproduces the full outcome of
any stored cell when a plot needs token times.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.config import config_from_dict
from experiments.errors import CellFailed
from experiments.runner import Cell, CellResult, run_cell
from experiments.sweep.sweep import run_sweep

NOT_IDENTITY = ("sweep", "policies", "policy_params", "description", "seed", "name")


def cell_identity(cell: Cell) -> dict[str, Any]:
    config = {k: v for k, v in cell.config.to_dict().items() if k not in NOT_IDENTITY}
    config["workload"] = {**config.get("workload", {}), "rate_scale": cell.rate_scale}
    return {
        "experiment": cell.config.name,
        "policy": cell.policy,
        "policy_params": cell.config.policy_params.get(cell.policy, {}),
        "rate_scale": cell.rate_scale,
        "seed": cell.seed,
        "config": config,
    }


def cell_from_identity(identity: dict[str, Any]) -> Cell:
    """The cell a stored identity describes (inverse of `cell_identity`)."""
    policy = identity["policy"]
    data = {**identity["config"], "name": identity["experiment"], "policies": [policy], "seed": identity["seed"]}
    if identity.get("policy_params"):
        data["policy_params"] = {policy: identity["policy_params"]}
    return Cell(config_from_dict(data), policy, float(identity["rate_scale"]), int(identity["seed"]))


def slim_outcome(outcome: dict[str, Any]) -> dict[str, Any]:
    """An outcome without its token times; `first_token` and `tokens` (count) summarise them."""
    times = outcome["token_times"]
    slim = {k: v for k, v in outcome.items() if k != "token_times"}
    slim["first_token"] = float(times[0]) if len(times) else None
    slim["tokens"] = len(times)
    return slim


def run_cell_slim(cell: Cell) -> dict[str, Any]:
    """run_cell, returned as plain data with slim outcomes (what a worker sends back and the store
    keeps). Scored streamed: no request's token times outlive its scoring."""
    with tempfile.TemporaryDirectory(prefix="slosched-cell-") as spill:
        result = run_cell(cell, streamed_in=Path(spill), outcome_row=lambda o: slim_outcome(o.to_dict()))
    return result.to_dict()


def rerun(identity: dict[str, Any]) -> CellResult:
    """The full result (with token times) of a stored cell, recomputed."""
    return run_cell(cell_from_identity(identity))


def execute_cells(
    cells: list[Cell],
    out_dir: str | Path | None,
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_going: bool = False,
) -> list[CellResult]:
    """Run cells on `backend`, storing each under `out_dir/cells/` and reusing stored ones.

    The results have slim outcomes (no token times)."""
    try:
        outcome = run_sweep(cells, run_cell_slim, out_dir, backend=backend, workers=workers, address=address,
                            progress=progress, describe=cell_identity, keep_going=keep_going)
    except CellFailed as failure:
        failure.partial = [None if r is None else CellResult.from_dict(r) for r in failure.partial or []]
        raise
    return [CellResult.from_dict(r) for r in outcome.results]
