"""The Ray backend gives exactly the local backend's results (on a local 2-CPU Ray instance)."""

from __future__ import annotations


import pytest
import ray

from experiments.sweep import CellFailed, ResultStore, run_sweep
from ray_local import init_local_ray
from sweep_fakes import fake_cell, make_cells



@pytest.fixture(scope="module")
def local_ray():
    init_local_ray()
    yield
    ray.shutdown()


def test_no_cluster_at_the_address_is_one_line(tmp_path, capsys, monkeypatch):
    """`--backend ray --address auto` with no cluster running: one line naming the address."""
    if ray.is_initialized():
        pytest.skip("a Ray session of this process would be reused instead")
    from experiments.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = tmp_path / "tiny.toml"
    config.write_text('policies = ["fcfs"]\n[workload]\nlimit = 20\n')
    code = main(["run", str(config), "--backend", "ray", "--address", "auto", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "could not start or join Ray at --address auto" in err and "ray start" in err


def test_ray_matches_local_and_resumes(local_ray, tmp_path):
    cells = make_cells(6)
    local = run_sweep(cells, fake_cell, tmp_path / "local", backend="local", workers=2)
    half = run_sweep(cells[:3], fake_cell, tmp_path / "ray", backend="ray")
    assert half.results == local.results[:3]
    full = run_sweep(cells, fake_cell, tmp_path / "ray", backend="ray")
    assert full.results == local.results
    assert sorted(full.reused) == sorted(half.keys) and len(full.computed) == 3
    assert ResultStore(tmp_path / "ray").keys() == ResultStore(tmp_path / "local").keys()


def test_ray_failure_names_the_cell(local_ray, tmp_path):
    cells = [{**c, "seed": -1} if c["id"] == "c1" else c for c in make_cells(3)]  # negative seed: numpy raises
    with pytest.raises(CellFailed, match="c1"):
        run_sweep(cells, fake_cell, tmp_path, backend="ray")

