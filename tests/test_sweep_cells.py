"""Experiment cells in sweeps: stable identity, slim storage, exact re-simulation, CLI resume, report."""

from __future__ import annotations

import json
from pathlib import Path


from experiments.cli import main
from experiments.config import config_from_dict
from experiments.runner import expand_cells, run_cell
from experiments.sweep.cells import cell_from_identity, cell_identity, rerun, run_cell_slim
from experiments.sweep.quick import quick
from experiments.sweep.store import ResultStore, cell_key

TOML = """
name = "tiny"
policies = ["fcfs", "edf"]
[workload]
trace = "azure-conv"
limit = 40
[workload.mix]
latency = 0.6
throughput = 0.4
[engine]
kv_blocks = 400
[predictor]
name = "noisy"
sigma = 0.5
[sweep]
rate_scales = [4.0, 12.0]
seeds = [0]
"""


def tiny_config(**sweep):
    data = {"name": "tiny", "policies": ["fcfs", "edf"], "workload": {"trace": "azure-conv", "limit": 40},
            "engine": {"kv_blocks": 400}, "sweep": {"rate_scales": [4.0, 12.0], "seeds": [0], **sweep}}
    return config_from_dict(data)


def test_identity_ignores_the_grid_and_round_trips():
    a = expand_cells(tiny_config())
    b = expand_cells(tiny_config(rate_scales=[4.0, 8.0, 12.0], seeds=[0, 1]))
    keys_a = {cell_key(cell_identity(c)) for c in a}
    keys_b = {cell_key(cell_identity(c)) for c in b}
    assert keys_a < keys_b  # extending the grid keeps every existing cell's key
    for cell in a:
        assert cell_identity(cell_from_identity(cell_identity(cell))) == cell_identity(cell)


def test_slim_result_drops_only_token_times_and_rerun_reproduces_the_cell():
    cell = expand_cells(tiny_config())[-1]  # edf at the higher load
    full = run_cell(cell).to_dict()
    slim = run_cell_slim(cell)
    assert slim["metrics"] == full["metrics"]
    for f, s in zip(full["outcomes"], slim["outcomes"], strict=True):
        assert "token_times" not in s and s["tokens"] == len(f["token_times"])
        assert s["first_token"] == (f["token_times"][0] if f["token_times"] else None)
        assert {k: v for k, v in f.items() if k != "token_times"} == {k: s[k] for k in f if k != "token_times"}
    again = rerun(cell_identity(cell)).to_dict()
    assert again["outcomes"] == full["outcomes"] and again["metrics"] == full["metrics"]


def test_quick_preset_shrinks_requests_rates_and_seeds():
    config = tiny_config(rate_scales=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], seeds=[0, 1, 2])
    q = quick(config, requests=30)
    assert q.name == "tiny-quick" and q.workload.limit == 30
    assert q.sweep.rate_scales == (1.0, 3.0, 5.0, 7.0) and q.sweep.seeds == (0,)


def test_cli_sweep_stores_cells_resumes_and_reports(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TOML)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--workers", "1", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    store = ResultStore(out)
    assert len(store.keys()) == 4 and not list(out.glob("schedule-*.jsonl"))
    stamps = {p.name: p.stat().st_mtime_ns for p in store.cells_dir.iterdir()}
    assert main(["run", str(cfg), "--out", str(out), "--backend", "sequential", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert {p.name: p.stat().st_mtime_ns for p in store.cells_dir.iterdir()} == stamps  # nothing rewritten

    assert main(["report", str(out)]) == 0
    names = sorted(Path(line).name for line in capsys.readouterr().out.split())
    assert names == ["summary.md", "tiny-attainment.png", "tiny-classes.png", "tiny-latency-cdf.png", "tiny-qoe.png", "tiny-timeline.png"]
