"""Runner cells: expansion over a sweep, plain-data round trip, results that match a direct run."""

from __future__ import annotations

import json

import pytest

from engine_adapter.simulator import simulate
from experiments.config import config_from_dict
from experiments.runner import Cell, build_cell_instance, execute, expand_cells, run_cell
from formulations.metrics import score
from solvers.policies.registry import make_policy
from solvers.prediction.registry import make_predictor

BASE = {
    "name": "t", "seed": 5, "policies": ["fcfs", "sjf"],
    "workload": {"limit": 40, "rate_scale": 2.0, "mix": {"latency": 0.5, "throughput": 0.5, "bulk": 0.0}},
    "engine": {"kv_blocks": 300},
    "predictor": {"name": "noisy", "sigma": 0.4},
}


def test_expand_cells_without_sweep_uses_the_base_point():
    cells = expand_cells(config_from_dict(BASE))
    assert [(c.policy, c.rate_scale, c.seed) for c in cells] == [("fcfs", 2.0, 5), ("sjf", 2.0, 5)]


def test_expand_cells_over_a_sweep_is_every_rate_seed_policy():
    config = config_from_dict({**BASE, "sweep": {"rate_scales": [1.0, 3.0], "seeds": [0, 1, 2]}})
    cells = expand_cells(config)
    assert len(cells) == 2 * 3 * 2 and len({c.key for c in cells}) == 12
    assert {(c.rate_scale, c.seed, c.policy) for c in cells} == {
        (r, s, p) for r in (1.0, 3.0) for s in (0, 1, 2) for p in ("fcfs", "sjf")}


def test_cell_round_trips_through_plain_json():
    cell = expand_cells(config_from_dict({**BASE, "sweep": {"seeds": [9]}}))[1]
    text = json.dumps(cell.to_dict(), sort_keys=True, allow_nan=False)
    again = Cell.from_dict(json.loads(text))
    assert again == cell and again.key == "sjf-rs2-seed9"


def test_run_cell_matches_a_direct_simulation_and_score():
    cell = expand_cells(config_from_dict(BASE))[1]
    result = run_cell(cell)
    instance = build_cell_instance(cell)
    assert instance.meta["seed"] == 5 and instance.meta["workload"]["rate_scale"] == 2.0
    # the cell seeds the noisy predictor with its own seed
    schedule = simulate(instance, make_policy("sjf"), make_predictor("noisy", sigma=0.4, seed=5))
    assert result.metrics == score(instance, schedule).to_dict()
    assert len(result.outcomes) == 40 and result.iterations == schedule.iterations
    assert result.config == cell.config.to_dict()
    assert {"python", "numpy", "ortools", "slosched"} <= set(result.versions)


def test_execute_shares_instances_without_changing_results():
    cells = expand_cells(config_from_dict(BASE))
    seen = []
    results = execute(cells, progress=lambda k, f: seen.append((k, f)))
    assert [r.key for r in results] == [c.key for c in cells]
    for cell, result in zip(cells, results, strict=True):
        assert result.metrics == run_cell(cell).metrics
    assert (0, 1.0) in seen and (1, 1.0) in seen


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="backend 'mpi'; valid: sequential"):
        execute([], backend="mpi")
