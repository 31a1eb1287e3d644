"""The prediction study: the same experiment under each length predictor, one table.

Every (predictor variant x policy x seed) is an ordinary runner cell of the config with its
[predictor] replaced; cells of one seed share the workload instance across variants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from experiments.config import ExperimentConfig, PredictorConfig
from experiments.runner import build_cell_instance, expand_cells, run_cell

VARIANTS: dict[str, PredictorConfig] = {
    "oracle": PredictorConfig("oracle"),
    "learned": PredictorConfig("learned"),
    "noisy s=0.25": PredictorConfig("noisy", {"sigma": 0.25}),
    "noisy s=0.5": PredictorConfig("noisy", {"sigma": 0.5}),
    "noisy s=1.0": PredictorConfig("noisy", {"sigma": 1.0}),
    "none": PredictorConfig("none"),
}


def run_study(config: ExperimentConfig, variants: dict[str, PredictorConfig] = VARIANTS,
              on_cell: Callable[[str, str, int, dict], None] | None = None) -> dict:
    """{variant: {policy: {"attainment": mean, "per_seed": [...], "mean_qoe": mean}}}."""
    table: dict[str, dict[str, dict]] = {}
    instances = {}
    for name, predictor in variants.items():
        variant = replace(config, predictor=predictor)
        variant.validate()
        rows: dict[str, dict] = {}
        for cell in expand_cells(variant):
            key = cell.workload_key
            if key not in instances:
                instances[key] = build_cell_instance(cell)
            result = run_cell(cell, instances[key])
            row = rows.setdefault(cell.policy, {"per_seed": [], "mean_qoe_per_seed": []})
            row["per_seed"].append(result.metrics["attainment"])
            row["mean_qoe_per_seed"].append(result.metrics["mean_qoe"])
            if on_cell:
                on_cell(name, cell.policy, cell.seed, result.metrics)
        for row in rows.values():
            row["attainment"] = float(np.mean(row["per_seed"]))
            row["mean_qoe"] = float(np.mean(row["mean_qoe_per_seed"]))
        table[name] = rows
    return table
