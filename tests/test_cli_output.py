"""`slosched run` output: --format, --schedules, --dry-run, seeds averaged, tables that fit, reuse line."""

from __future__ import annotations

import csv
import gzip
import io
import json
import tomllib
from statistics import fmean

import pytest
from rich.console import Console

from experiments.cli import main
from experiments.cli.run_table import aggregate, run_table
from experiments.config import config_from_dict, load_config
from experiments.runner import CellResult

SMALL = """
name = "small"
seed = 3
policies = ["fcfs", "gain-density"]
[workload]
trace = "azure-conv"
limit = 40
rate_scale = 3.0
[engine]
kv_blocks = 400
[predictor]
name = "noisy"
sigma = 0.3
"""
SWEEP = SMALL.replace('name = "small"', 'name = "sweep"') + """
[sweep]
rate_scales = [1.0, 3.0]
seeds = [1, 2]
"""


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["run", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return str(path)


def test_every_format_parses_and_carries_the_same_numbers(tmp_path, small, capsys):
    code, doc_text, _ = run(capsys, small, "--out", str(tmp_path / "j"), "--format", "json", "--schedules", "none")
    assert code == 0
    document = json.loads(doc_text)
    code, alias_text, _ = run(capsys, small, "--out", str(tmp_path / "a"), "--json", "--schedules", "none")
    assert code == 0 and json.loads(alias_text) == document
    code, csv_text, err = run(capsys, small, "--out", str(tmp_path / "c"), "--format", "csv", "--schedules", "none")
    assert code == 0 and "wrote" in err  # the note goes to stderr: stdout is only CSV
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert [r["policy"] for r in rows] == list(document)
    for row in rows:
        expected = document[row["policy"]]
        assert float(row["attainment"]) == pytest.approx(expected["attainment"])
        assert float(row["ttft_p99"]) == pytest.approx(expected["ttft"]["p99"])
        assert row["seeds"] == "1"
    code, md_text, _ = run(capsys, small, "--out", str(tmp_path / "m"), "--format", "markdown", "--schedules", "none")
    assert code == 0
    table_lines = [line for line in md_text.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + len(document)  # header, alignment, one row per policy
    assert all(line.count("|") == table_lines[0].count("|") for line in table_lines)
    fcfs = next(line for line in table_lines if line.startswith("| fcfs "))
    assert f"{document['fcfs']['attainment'] * 100:.1f}" in fcfs


def test_schedules_gz_is_gzipd_jsonl_none_writes_none(tmp_path, small, capsys):
    code, out, _ = run(capsys, small, "--out", str(tmp_path / "gz"), "--json")
    assert code == 0
    document = json.loads(out)
    for policy in document:
        lines = gzip.decompress((tmp_path / "gz" / f"schedule-{policy}.jsonl.gz").read_bytes()).decode().splitlines()
        records = [json.loads(line) for line in lines]
        assert len(records) == document[policy]["requests"]
        assert sum(r["slo_met"] for r in records) == document[policy]["slo_met"]
    assert run(capsys, small, "--out", str(tmp_path / "none"), "--json", "--schedules", "none")[0] == 0
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == ["metrics.json"]
    assert run(capsys, small, "--out", str(tmp_path / "plain"), "--json", "--schedules", "jsonl")[0] == 0
    plain = (tmp_path / "plain" / "schedule-fcfs.jsonl").read_text().splitlines()
    assert len(plain) == document["fcfs"]["requests"]


def test_a_sweep_refuses_schedule_files(tmp_path, capsys):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(SWEEP)
    code, _, err = run(capsys, str(cfg), "--out", str(tmp_path / "o"), "--schedules", "gz")
    assert code == 2 and "--schedules gz: a sweep stores its cells under OUT/cells" in err
    assert not (tmp_path / "o").exists()


def test_dry_run_prints_the_inherited_config_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    trace = tmp_path / "mine.csv"
    trace.write_text("ts,in,out\n0,5,3\n1,6,2\n")
    code, out, _ = run(capsys, "--trace", str(trace), "--policies", "fcfs", "--dry-run")
    assert code == 0
    assert list(tmp_path.iterdir()) == [trace]  # no results/ folder
    assert "unmarked values come from the demo config demo.toml" in out
    assert 'policies = ["fcfs"] # command line' in out
    assert f'trace = "{trace}" # command line' in out
    assert "# limit = 1000 in the file: removed by the command line" in out
    assert "kv_blocks = 1500" in out and "[workload.mix]" in out  # inherited from the demo, unmarked
    assert "qoe_threshold = 0.95 # default" in out
    resolved = config_from_dict(tomllib.loads(out))
    assert resolved.policies == ("fcfs",) and resolved.workload.limit is None and resolved.workload.rate_scale == 1.0


def test_dry_run_of_a_config_marks_overrides(tmp_path, small, capsys):
    code, out, _ = run(capsys, small, "--rate-scale", "5", "--dry-run", "--out", str(tmp_path / "o"))
    assert code == 0 and not (tmp_path / "o").exists()
    assert f"unmarked values come from {small}" in out
    assert "rate_scale = 5.0 # command line" in out and "limit = 40\n" in out
    assert config_from_dict(tomllib.loads(out)) == config_from_dict(
        {**load_config(small).to_dict(), "workload": {**load_config(small).to_dict()["workload"], "rate_scale": 5.0}})


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    cfg = tmp / "sweep.toml"
    cfg.write_text(SWEEP)
    out = tmp / "out"
    argv = ["run", str(cfg), "--out", str(out), "--backend", "sequential"]
    assert main([*argv, "--json"]) == 0
    return argv, out


def test_a_sweep_table_has_one_row_per_policy_and_load_with_seed_means(sweep_run, capsys):
    argv, out = sweep_run
    capsys.readouterr()
    assert main([*argv, "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0] == f"slosched: reusing 8 of 8 finished cells in {out}; delete {out} to recompute"
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    per_seed = json.loads((out / "metrics.json").read_text())["policies"]
    assert [(r["policy"], float(r["rate_scale"])) for r in rows] == [
        (p, rate) for rate in (1.0, 3.0) for p in ("fcfs", "gain-density")]
    for row in rows:
        seeds = [s for s in per_seed[row["policy"]] if s["rate_scale"] == float(row["rate_scale"])]
        assert row["seeds"] == "2" and len(seeds) == 2
        values = [s["attainment"] for s in seeds]
        assert float(row["attainment"]) == pytest.approx(fmean(values))
        assert (float(row["attainment_min"]), float(row["attainment_max"])) == pytest.approx((min(values), max(values)))
        assert float(row["jct_p99"]) == pytest.approx(fmean(s["jct"]["p99"] for s in seeds))


@pytest.mark.parametrize("width", [80, 100, 140])
def test_tables_fit_the_width_and_cut_no_cell(sweep_run, width):
    _, out = sweep_run
    results = [CellResult.from_dict(json.loads(p.read_text())["result"]) for p in sorted((out / "cells").glob("*.json"))]
    config = load_config(out.parent / "sweep.toml")
    for sweep in (True, False):
        chosen = results if sweep else [r for r in results if r.rate_scale == 3.0 and r.seed == 1]
        table = run_table(config, chosen, sweep)
        buffer = io.StringIO()
        table.print(Console(file=buffer, width=width, color_system=None))
        text = buffer.getvalue()
        assert "…" not in text
        assert max(len(line) for line in text.splitlines()) <= width
        for row in table.rows:
            for cell in row:
                for part in cell.split("\n"):
                    assert part in text, f"cell {part!r} not shown whole at width {width}"
        points = aggregate(chosen)
        assert len(table.rows) == len(points) == (4 if sweep else 2)
    if width >= 100:  # the single-run table fits 100 columns in one piece
        buffer = io.StringIO()
        run_table(config, chosen, False).print(Console(file=buffer, width=width, color_system=None))
        assert "(part 2/" not in buffer.getvalue()
