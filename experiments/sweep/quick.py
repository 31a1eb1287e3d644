"""The `--quick` preset: the same experiment, smaller, for CI and a first look.

It keeps the shape of the sweep (its lowest and highest load and a few between, every policy)
but uses fewer requests and one seed, so the curves still span light load to overload.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from experiments.config import ExperimentConfig

QUICK_REQUESTS = 300
QUICK_RATE_POINTS = 4
QUICK_SUFFIX = "-quick"


def quick(config: ExperimentConfig, requests: int = QUICK_REQUESTS, rate_points: int = QUICK_RATE_POINTS) -> ExperimentConfig:
    limit = requests if config.workload.limit is None else min(config.workload.limit, requests)
    rates = config.sweep.rate_scales
    if len(rates) > rate_points:
        ordered = sorted(rates)
        picks = np.unique(np.linspace(0, len(ordered) - 1, rate_points).round().astype(int))
        rates = tuple(ordered[i] for i in picks)
    return replace(
        config,
        name=f"{config.name}{QUICK_SUFFIX}",  # never mixed with the full run's cells in a report
        workload=replace(config.workload, limit=limit),
        sweep=replace(config.sweep, rate_scales=rates, seeds=config.sweep.seeds[:1]),
    )
