"""Sweep faults: a killed driver leaves no worker behind, Ctrl-C is one line and keeps finished
cells, a damaged cell file is recomputed with a warning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.sweep import ResultStore, cell_key, run_sweep
from sweep_fakes import fake_cell, make_cells

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
SLOW_SWEEP = """
import sys
from sweep_fakes import fake_cell, make_cells
from experiments.sweep import run_sweep
run_sweep(make_cells(8, sleep=30.0), fake_cell, sys.argv[1], backend="local", workers=2)
"""
CLI_SWEEP = """
policies = ["fcfs"]
[workload]
limit = 150
[sweep]
seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
"""


def children(pid: int) -> set[int]:
    """Live child processes of `pid` (from /proc: no psutil needed)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_sigkill_of_the_driver_takes_its_pool_workers_down(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SWEEP, str(tmp_path / "run")], env=ENV)
    try:
        # two pool workers (plus the resource tracker) once the pool has started
        assert wait_for(lambda: len(children(proc.pid)) >= 3, 120), "the pool never started"
        time.sleep(3.0)  # let the workers finish importing and run their initializer
        workers = children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, as the OOM killer would
        proc.wait()
        assert wait_for(lambda: not any(alive(w) for w in workers), 15), \
            f"still running after the driver died: {[w for w in workers if alive(w)]}"
    finally:
        for pid in [proc.pid, *children(proc.pid)]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_ctrl_c_prints_one_line_and_keeps_finished_cells(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(CLI_SWEEP)
    out = tmp_path / "out"
    # SIGINT as a terminal's Ctrl-C finds it, even when this test runs with SIGINT ignored (a
    # background job of a non-interactive shell), which the child would otherwise inherit
    entry = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "from experiments.cli import main; sys.exit(main())")
    proc = subprocess.Popen([sys.executable, "-c", entry, "run", str(config), "--out", str(out),
                             "--workers", "2"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, text=True)
    store = ResultStore(out)
    assert wait_for(lambda: len(store.keys()) >= 1 or proc.poll() is not None, 180)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines == [f"slosched: interrupted; finished cells are kept under {out}/cells: rerun the same command "
                     "to resume"], err
    kept = store.keys()
    assert kept and all(store.read(k)["result"]["metrics"]["requests"] == 150 for k in kept)


def test_a_damaged_cell_file_is_recomputed_with_a_warning(tmp_path, capsys, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("SWEEP_CALL_LOG", str(log))
    cells = make_cells(4)
    first = run_sweep(cells, fake_cell, tmp_path / "run", backend="sequential")
    damaged = ResultStore(tmp_path / "run").path(cell_key(cells[2]))
    damaged.write_text(damaged.read_text()[:40])  # a copy cut short / a full disk
    log.unlink()
    again = run_sweep(cells, fake_cell, tmp_path / "run", backend="sequential")
    assert log.read_text().split() == [cells[2]["id"]]
    assert again.results == first.results
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and str(damaged) in err and "recomputing" in err
