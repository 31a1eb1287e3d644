"""`slosched run` end to end: the JSON document, the files written, overrides, one-line errors."""

from __future__ import annotations

import contextlib
import io
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.cli import main
from experiments.config import load_config

SMALL = """
name = "small"
seed = 3
policies = ["fcfs", "edf"]
[workload]
trace = "azure-conv"
limit = 60
rate_scale = 3.0
[workload.mix]
latency = 0.5
throughput = 0.3
bulk = 0.2
[workload.bulk]
size_min = 2
size_max = 4
shapes = { chain = 1.0, map_reduce = 1.0 }
[engine]
kv_blocks = 400
[predictor]
name = "noisy"
sigma = 0.3
"""
LATENCY_ONLY = """
policies = ["fcfs"]
[workload]
limit = 30
"""
OUTCOME_FIELDS = {"id", "class", "group", "arrival", "prompt_len", "output_len", "ttft_target", "read_rate",
                  "deadline", "token_times", "preemptions", "finish", "qoe", "slo_met"}
SUMMARY_FIELDS = {"attainment", "attainment_by_class", "mean_qoe", "ttft", "tbt", "jct", "throughput", "preemptions"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["run", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def config_file(tmp_path, text: str, name: str = "small.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def read_jsonl(path):
    """A schedule file: JSONL, gzip'd when the name ends in .gz (the default of `run`)."""
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    return [json.loads(line) for line in text.splitlines()]


def brute_force_qoe(times: list[float], arrival: float, ttft: float, rate: float) -> float:
    """docs/DESIGN.md's read-time recursion, token by token."""
    n = len(times)
    read = ideal = 0.0
    delay = 0.0
    for i, delivered in enumerate(times):
        ideal = arrival + ttft + i / rate
        read = max(delivered, ideal) if i == 0 else max(delivered, read + 1 / rate)
        delay += read - ideal
    whole = sum(ideal + 1 / rate - (arrival + ttft + i / rate) for i in range(n))
    return max(0.0, 1.0 - delay / whole)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One --json run of the small config, shared by the tests that only read its outputs."""
    tmp = tmp_path_factory.mktemp("small")
    cfg = config_file(tmp, SMALL)
    out = tmp / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["run", str(cfg), "--out", str(out), "--json"])
    return code, stdout.getvalue(), out, cfg


def test_json_document_is_all_of_stdout_and_keyed_by_policy(small_run):
    code, stdout, _, _ = small_run
    assert code == 0
    doc = json.loads(stdout)  # nothing else on stdout
    assert list(doc) == ["fcfs", "edf"]
    for summary in doc.values():
        assert SUMMARY_FIELDS <= set(summary)
        assert set(summary["attainment_by_class"]) == {"latency", "throughput", "bulk"}
        for metric in ("ttft", "tbt", "jct"):
            assert summary[metric]["p50"] <= summary[metric]["p99"]
        assert 0.0 <= summary["attainment"] <= 1.0 and summary["requests"] == 60


def test_files_written_and_consistent_with_the_document(small_run):
    _, stdout, out, cfg = small_run
    doc = json.loads(stdout)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["policies"] == doc
    assert metrics["config"]["name"] == "small" and metrics["config"]["seed"] == 3
    assert {"python", "numpy", "ortools", "slosched"} <= set(metrics["versions"])
    assert "git_commit" in metrics
    assert load_config(cfg).to_dict() == metrics["config"]  # the recorded config is the one that ran
    for policy, summary in doc.items():
        lines = read_jsonl(out / f"schedule-{policy}.jsonl.gz")
        assert len(lines) == 60 and all(OUTCOME_FIELDS <= set(line) for line in lines)
        assert [line["id"] for line in lines] == [f"r{k}" for k in range(60)]
        met = [line["slo_met"] for line in lines]
        assert summary["attainment"] == pytest.approx(np.mean(met))
        for cls in ("latency", "throughput", "bulk"):
            of_cls = [line["slo_met"] for line in lines if line["class"] == cls]
            assert summary["attainment_by_class"][cls] == pytest.approx(np.mean(of_cls))
        assert summary["preemptions"] == sum(line["preemptions"] for line in lines)
        qoes = []
        for line in lines:
            times = line["token_times"]
            assert len(times) == line["output_len"] and times == sorted(times)
            assert line["finish"] == times[-1] and times[0] >= line["arrival"]
            if line["class"] == "latency":
                expected = brute_force_qoe(times, line["arrival"], line["ttft_target"], line["read_rate"])
                assert line["qoe"] == pytest.approx(expected, abs=1e-9)
                assert line["slo_met"] == (line["qoe"] >= 0.95)
                qoes.append(line["qoe"])
            elif line["class"] == "throughput":
                assert line["slo_met"] == (line["finish"] <= line["deadline"] + 1e-9)
        assert summary["mean_qoe"] == pytest.approx(np.mean(qoes))
        groups: dict[str, list[dict]] = {}
        for line in lines:
            if line["class"] == "bulk":
                groups.setdefault(line["group"], []).append(line)
        assert groups
        for members in groups.values():  # all or nothing, by the group deadline
            on_time = all(m["finish"] <= m["deadline"] + 1e-9 for m in members)
            assert all(m["slo_met"] == on_time for m in members)


def test_same_seed_same_results_other_seed_other_workload(tmp_path, capsys):
    cfg = config_file(tmp_path, SMALL)
    runs = [run(capsys, str(cfg), "--json", "--out", str(tmp_path / f"o{k}"), "--policies", "fcfs", *extra)
            for k, extra in enumerate([(), (), ("--seed", "4")])]
    assert runs[0][1] == runs[1][1]
    lines = [read_jsonl(tmp_path / f"o{k}" / "schedule-fcfs.jsonl.gz") for k in range(3)]
    assert lines[0] == lines[1]
    assert [x["class"] for x in lines[0]] != [x["class"] for x in lines[2]]


def test_custom_trace_columns_time_unit_and_rate_scale(tmp_path, capsys):
    trace = tmp_path / "mine.csv"
    rows = [(1000 + 250 * k, 50 + k, 5 + k % 3) for k in range(12)]
    trace.write_text("ms,p,o\n" + "".join(f"{a},{p},{o}\n" for a, p, o in rows))
    cfg = config_file(tmp_path, LATENCY_ONLY, "lat.toml")
    code, out, _ = run(capsys, str(cfg), "--trace", str(trace), "--columns", "arrival=ms,prompt=p,output=o",
                       "--time-unit", "ms", "--rate-scale", "2", "--limit", "12", "--out", str(tmp_path / "o"), "--json")
    assert code == 0 and json.loads(out)["fcfs"]["requests"] == 12
    lines = read_jsonl(tmp_path / "o" / "schedule-fcfs.jsonl.gz")
    assert [x["arrival"] for x in lines] == pytest.approx([0.125 * k for k in range(12)])  # 250 ms / 2
    assert [x["prompt_len"] for x in lines] == [p for _, p, _ in rows]
    assert [x["output_len"] for x in lines] == [o for _, _, o in rows]


def test_no_config_runs_the_demo_and_prints_a_table(tmp_path, capsys):
    code, out, _ = run(capsys, "--limit", "40", "--policies", "sjf", "--out", str(tmp_path / "demo"))
    assert code == 0
    assert "demo: 40 requests" in out and "sjf" in out and "TTFT" in out
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text())["experiment"] == "demo"


@pytest.mark.parametrize("argv, message", [
    (["--policies", "fcfs,lifo"], "unknown policy 'lifo'; valid: fcfs, edf, sjf"),
    (["--trace", "azure-chat"], "valid: azure-conv, azure-code"),
    (["--trace", "azure-code", "--columns", "arrival=TS"], "column 'TS' (arrival) not found; columns present: TIMESTAMP"),
    (["--columns", "start=TS"], "ROLE one of arrival, prompt, output"),
    (["--time-unit", "us"], "time_unit='us'; valid: s, ms"),
    (["CONFIG:[workload]\nlimt = 3"], "[workload] unknown key 'limt'; valid: trace, columns"),
    (["CONFIG:[engine]\nprofile = 'a10'"], "unknown latency profile 'a10'; valid: llama3-8b-a100, llama3-8b-h100"),
    (["CONFIG:[engine]\nkv = 3"], "[engine] unknown key 'kv'; valid: profile, kv_blocks"),
    (["CONFIG:[predictor]\nname = 'magic'"], "unknown predictor 'magic'; valid: oracle, noisy"),
    (["CONFIG:colour = 'red'"], "[config] unknown key 'colour'; valid: name"),
    (["CONFIG:[workload.bulk]\nshapes = {star = 1.0}"], "unknown shape(s) ['star']; valid: independent"),
    (["missing.toml"], "config file 'missing.toml' not found"),
])
def test_wrong_names_are_one_line_errors_with_exit_code_2(tmp_path, capsys, argv, message):
    if argv[0].startswith("CONFIG:"):
        argv = [str(config_file(tmp_path, 'policies = ["fcfs"]\n' + argv[0].removeprefix("CONFIG:")))]
    code, out, err = run(capsys, *argv, "--limit", "10", "--out", str(tmp_path / "o"), "--json")
    assert code == 2 and out == ""
    assert err.startswith("slosched: error: ") and err.count("\n") == 1
    assert message in err


def test_a_command_line_imports_only_its_sub_command():
    """`slosched run` loads neither the exact solvers, the plots nor the other sub-commands (a
    million-request run needs the memory). It does load the policies, and with them numba, which
    imports scipy: a fresh interpreter building the `run` parser peaks at ~130 MB (~60 MB before
    the policy rules were compiled), against ~210 MB with everything."""
    from experiments.cli import COMMANDS, commands_needed

    assert commands_needed(["run", "x.toml", "--policies", "fcfs"]) == ("run",)
    assert commands_needed(["--help", "run"]) == commands_needed(["x.toml"]) == commands_needed(["nope"]) \
        == commands_needed([]) == tuple(COMMANDS)
    probe = ("import sys; from experiments.cli import build_parser, commands_needed; "
             "build_parser(commands_needed(['run', 'x.toml'])); "
             "print(sorted(m for m in ('ortools', 'pulp', 'matplotlib', 'highspy', 'experiments.cli.solve') "
             "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).parent.parent, env={**os.environ, "PYTHONPATH": "."})
    assert loaded.stdout.strip() == "[]", loaded.stderr


def test_help_lists_every_sub_command(capsys):
    from experiments.cli import COMMANDS

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
