"""Experiment cells (experiments.runner) as sweep cells: their identity and their execution.

A cell's identity is what determines its result: the experiment's workload, engine and
predictor, the one policy with its parameters, the rate scale and the seed. The config's sweep
grid, its other policies and its description are left out on purpose, so extending a sweep
(one more rate, one more policy, another seed) reuses every cell already computed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def execute_cells(
    cells: list[Cell],
    out_dir: str | Path | None,
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[CellResult]:
    """Run cells on `backend`, storing each under `out_dir/cells/` and reusing stored ones."""
    outcome = run_sweep(cells, run_cell, out_dir, backend=backend, workers=workers, address=address,
                        progress=progress, describe=cell_identity)
    return [CellResult.from_dict(r) for r in outcome.results]
