"""What `slosched run` leaves behind when something fails: never a complete-looking result with
missing data (metrics.json is written last, atomically, and only for a whole or --keep-going run),
and --json still reports the policies that finished."""

from __future__ import annotations

import errno
import json

import pytest

import experiments.runner as runner
from experiments.cli import main
from solvers.policies.registry import make_policy

CONFIG = """
name = "small"
policies = ["fcfs", "edf", "sjf"]
[workload]
limit = 40
"""


class Broken:
    """A policy that fails at run time (after the run has started)."""

    name = "edf"

    def reset(self, engine):
        pass

    def decide(self, view):
        raise RuntimeError("boom in decide")


@pytest.fixture
def edf_fails(monkeypatch):
    monkeypatch.setattr(runner, "make_policy", lambda name, **kw: Broken() if name == "edf" else make_policy(name, **kw))


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(CONFIG)
    return str(path)


def test_json_with_a_failing_policy_prints_what_finished_and_writes_no_metrics(tmp_path, config, edf_fails, capsys):
    out = tmp_path / "out"
    code = main(["run", config, "--schedules", "jsonl", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert list(json.loads(captured.out)) == ["fcfs"]  # sjf never ran: the run stops at the failure
    assert captured.err.strip().splitlines() == [
        "slosched: error: cell edf-rs1-seed0 failed: RuntimeError: boom in decide"]
    assert not (out / "metrics.json").exists()
    assert (out / "schedule-fcfs.jsonl").exists()


def test_keep_going_runs_the_others_and_writes_metrics_naming_the_failure(tmp_path, config, edf_fails, capsys):
    out = tmp_path / "out"
    code = main(["run", config, "--schedules", "jsonl", "--out", str(out), "--json", "--keep-going"])
    captured = capsys.readouterr()
    assert code == 2
    assert list(json.loads(captured.out)) == ["fcfs", "sjf"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["policies"]) == ["fcfs", "sjf"]
    assert "edf-rs1-seed0 failed" in metrics["failed"]
    for policy in ("fcfs", "sjf"):
        lines = (out / f"schedule-{policy}.jsonl").read_text().splitlines()
        assert len(lines) == metrics["policies"][policy]["requests"] == 40


def test_a_full_disk_leaves_no_metrics_and_no_cut_schedule(tmp_path, config, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # from an earlier run into the same folder
    lines = []
    original = runner.schedule_line

    def line_then_fill(outcome):  # the disk fills up after 5 lines of the second schedule (40 requests each)
        lines.append(outcome.id)
        if len(lines) > 45:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "schedule-edf.jsonl"))
        return original(outcome)

    monkeypatch.setattr(runner, "schedule_line", line_then_fill)
    code = main(["run", config, "--schedules", "jsonl", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"slosched: error: {out}/schedule-edf.jsonl: No space left on device"]
    assert not (out / "metrics.json").exists()  # the earlier run's too: it no longer describes the folder
    assert sorted(p.name for p in out.iterdir()) == ["schedule-fcfs.jsonl"]  # no cut file, no temp file
