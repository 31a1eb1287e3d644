"""Sweeps: per-cell atomic results, resume after a kill or a failure, identical results per backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.sweep import CellFailed, ResultStore, cell_key, run_sweep
from sweep_fakes import fake_cell, make_cells

ROOT = Path(__file__).resolve().parents[1]


def calls(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.fixture
def call_log(tmp_path, monkeypatch) -> Path:
    log = tmp_path / "calls.log"
    monkeypatch.setenv("SWEEP_CALL_LOG", str(log))
    return log


def test_cell_key_is_stable_and_order_independent():
    a = {"policy": "slo", "rate": 1.5, "seed": 3, "workload": {"trace": "azure-conv", "n": 100}}
    b = {"workload": {"n": 100, "trace": "azure-conv"}, "seed": 3, "rate": 1.5, "policy": "slo"}
    assert cell_key(a) == cell_key(b)
    assert cell_key(a) != cell_key({**a, "seed": 4})
    assert cell_key(a) != cell_key({**a, "rate": 1.5000001})
    # pinned: the key must not change between processes or Python versions (resume depends on it)
    assert cell_key({"x": 1}) == "5041bf1f713df204"


def test_store_write_is_atomic_and_leaves_no_temporaries(tmp_path):
    store = ResultStore(tmp_path)
    store.write("k1", {"id": "a"}, {"v": 1})
    store.write("k1", {"id": "a"}, {"v": 2})  # rewriting replaces, never duplicates
    assert store.keys() == {"k1"}
    assert store.read("k1") == {"key": "k1", "cell": {"id": "a"}, "result": {"v": 2}}
    assert [p.name for p in (tmp_path / "cells").iterdir()] == ["k1.json"]
    assert (tmp_path / "cells" / "k1.json").stat().st_mode & 0o777 == 0o644
    (tmp_path / "cells" / ".k2.abc.tmp").write_text('{"half')  # what a kill mid-write leaves
    assert store.keys() == {"k1"}
    assert store.remove_stale_temporaries() == 1


def test_local_backend_matches_sequential_and_keeps_cell_order(tmp_path, call_log):
    cells = make_cells(6)
    seq = run_sweep(cells, fake_cell, tmp_path / "seq", backend="sequential")
    loc = run_sweep(cells, fake_cell, tmp_path / "loc", backend="local", workers=2)
    assert loc.results == seq.results
    assert [r["id"] for r in loc.results] == [c["id"] for c in cells]
    assert sorted(calls(call_log)) == sorted([c["id"] for c in cells] * 2)


def test_duplicate_cells_run_once(tmp_path, call_log):
    cells = make_cells(3)
    out = run_sweep(cells + cells[:2], fake_cell, tmp_path, backend="sequential")
    assert len(out.results) == 5 and out.results[3] == out.results[0]
    assert sorted(calls(call_log)) == ["c0", "c1", "c2"]
    assert len(ResultStore(tmp_path).keys()) == 3


def test_rerun_of_finished_sweep_computes_nothing(tmp_path, call_log):
    cells = make_cells(4)
    first = run_sweep(cells, fake_cell, tmp_path, backend="sequential")
    call_log.unlink()
    second = run_sweep(cells, fake_cell, tmp_path, backend="local", workers=2)
    assert calls(call_log) == []
    assert second.computed == [] and sorted(second.reused) == sorted(set(first.keys))
    assert second.results == first.results


@pytest.mark.parametrize("backend", ["sequential", "local"])
def test_failure_keeps_finished_cells_and_rerun_computes_only_the_rest(tmp_path, call_log, monkeypatch, backend):
    cells = make_cells(8, sleep=0.05)
    monkeypatch.setenv("SWEEP_FAIL_ID", "c3")
    with pytest.raises(CellFailed, match="injected failure in c3") as info:
        run_sweep(cells, fake_cell, tmp_path / "run", backend=backend, workers=2)
    assert info.value.item["id"] == "c3"
    stored_after_failure = ResultStore(tmp_path / "run").keys()
    assert cell_key(cells[3]) not in stored_after_failure
    if backend == "sequential":  # c0..c2 finished before the failure, nothing after it started
        assert stored_after_failure == {cell_key(c) for c in cells[:3]}
    else:
        assert len(stored_after_failure) >= 2
    first_calls = calls(call_log)

    monkeypatch.delenv("SWEEP_FAIL_ID")
    call_log.unlink()
    resumed = run_sweep(cells, fake_cell, tmp_path / "run", backend=backend, workers=2)
    recomputed = calls(call_log)
    finished_ids = {c["id"] for c in cells if cell_key(c) in stored_after_failure}
    assert not finished_ids & set(recomputed), "a finished cell was computed again"
    assert sorted(recomputed) == sorted(c["id"] for c in cells if c["id"] not in finished_ids)
    assert len(set(first_calls)) == len(first_calls)

    clean = run_sweep(cells, fake_cell, tmp_path / "clean", backend="sequential")
    assert resumed.results == clean.results
    assert ResultStore(tmp_path / "run").keys() == {cell_key(c) for c in cells}


@pytest.mark.parametrize("backend", ["sequential", "local"])
def test_keep_going_runs_every_other_cell_and_counts_failures(tmp_path, call_log, monkeypatch, backend):
    cells = make_cells(6)
    monkeypatch.setenv("SWEEP_FAIL_ID", "c1,c4")
    with pytest.raises(CellFailed, match="and 1 more cell") as info:
        run_sweep(cells, fake_cell, tmp_path, backend=backend, workers=2, keep_going=True)
    assert info.value.item["id"] == "c1" and info.value.others == 1
    assert ResultStore(tmp_path).keys() == {cell_key(c) for c in cells if c["id"] not in ("c1", "c4")}
    assert sorted(calls(call_log)) == sorted(c["id"] for c in cells)


KILL_SCRIPT = """
import sys
from experiments.sweep import run_sweep
from sweep_fakes import fake_cell, make_cells
run_sweep(make_cells(10, sleep=0.25), fake_cell, sys.argv[1], backend="local", workers=2)
"""


def test_resume_after_killing_the_sweep_process(tmp_path, call_log):
    """SIGKILL the whole sweep (driver and workers) after some cells are written, then rerun."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)], env=env, start_new_session=True)
    store = ResultStore(out)
    deadline = time.monotonic() + 60
    while len(store.keys()) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before_kill = store.keys()
    cells = make_cells(10, sleep=0.25)
    assert 3 <= len(before_kill) < len(cells), "the kill should land mid-sweep"
    done_ids = {c["id"] for c in cells if cell_key(c) in before_kill}
    finished_results = {k: store.read(k) for k in before_kill}

    call_log.unlink()
    resumed = run_sweep(cells, fake_cell, out, backend="local", workers=2)
    recomputed = calls(call_log)
    assert not done_ids & set(recomputed), "a cell finished before the kill was computed again"
    assert sorted(recomputed) == sorted(c["id"] for c in cells if c["id"] not in done_ids)
    assert all(store.read(k) == rec for k, rec in finished_results.items())  # untouched

    clean = run_sweep(cells, fake_cell, tmp_path / "clean", backend="sequential")
    assert resumed.results == clean.results
    files = sorted(p.name for p in (out / "cells").iterdir())
    assert files == sorted(f"{cell_key(c)}.json" for c in cells)  # one file per cell, no leftovers
    assert all(json.loads((out / "cells" / f).read_text())["cell"]["id"] for f in files)
