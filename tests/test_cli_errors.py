"""Every class of bad input to the CLI: one line on stderr, exit 2, naming the input; nothing written.

One parametrized case per class (a wrong encoding, a wrong type, an out-of-range number, a path
that is not a file, ...), not per file the issue tried: a new input of a known class must land
in the same check.
"""

from __future__ import annotations

import gzip
import json

import pytest

from experiments.cli import main

CONFIG = """
policies = ["fcfs"]
[workload]
limit = 20
"""
TRACE = "ts,in,out\n0.0,10,5\n0.5,12,6\n1.0,8,4\n"
INSTANCE = {
    "engine": {"kv_blocks": 100, "latency": {"c0": 0.01, "c_prefill": 1e-5, "c_decode": 1e-4, "c_ctx": 1e-7}},
    "requests": [{"id": "a", "class": "throughput", "arrival": 0.0, "prompt_len": 4, "output_len": 3,
                  "slack_ratio": 2.0}],
}


def _file(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


def _config(tmp_path, extra_top="", extra_tables=""):
    return _file(tmp_path, "c.toml", extra_top + CONFIG + extra_tables)


def _instance(tmp_path, **changes):
    return _file(tmp_path, "i.json", json.dumps({**INSTANCE, **changes}))


def _trace_args(tmp_path, name, content):
    return ["run", _config(tmp_path), "--trace", _file(tmp_path, name, content), "--columns",
            "arrival=ts,prompt=in,output=out"]


CASES = {
    # command-line values
    "policies empty": (lambda t: ["run", _config(t), "--policies", ""], "--policies '': no policy named"),
    "policies only commas": (lambda t: ["run", _config(t), "--policies", ",,"], "--policies ',,': no policy named"),
    "rate scale inf": (lambda t: ["run", _config(t), "--rate-scale", "inf"], "'inf': input should be a finite number"),
    "workers zero": (lambda t: ["run", _config(t), "--workers", "0"], "'0': input should be greater than or equal to 1"),
    "negative seed on the CLI": (lambda t: ["run", _config(t), "--seed", "-3"], "'-3': input should be greater than or"),
    "out is an existing file": (lambda t: ["run", _config(t), "--out", _file(t, "f", "x")], "is an existing file; give a directory"),
    "out is under an existing file": (lambda t: ["run", _config(t), "--out", _file(t, "f", "x") + "/sub"],
                                      "is an existing file; give a directory"),
    "compare instances zero": (lambda t: ["compare", "--instances", "0"], "argument --instances: '0'"),
    # config values
    "boolean as integer": (lambda t: ["run", _config(t, extra_tables="[engine]\nkv_blocks = true\n")],
                           "engine.kv_blocks = True: input should be a valid integer"),
    "name leaves results/": (lambda t: ["run", _config(t, 'name = "../../x"\n')], "name = '../../x': use letters"),
    "negative seed in a config": (lambda t: ["run", _config(t, "seed = -1\n")], "seed = -1: input should be greater"),
    "a sweep seed twice": (lambda t: ["run", _config(t, extra_tables="[sweep]\nseeds = [0, 0]\n")],
                           "sweep.seeds = [0, 0]: 0 is listed twice"),
    "tiny gamma cv": (lambda t: ["run", _config(t, extra_tables='arrivals = "gamma"\ncv = 1e-200\n')],
                      "workload.cv = 1e-200: must be in [0.01, 100]"),
    "bad policy parameter value": (lambda t: ["run", _file(t, "p.toml", 'policies = ["andes"]\n[workload]\nlimit = 20\n'
                                                                 "[policy_params.andes]\nhorizon = -1\n")],
                                   "[policy_params.andes] andes: horizon=-1 must be > 0"),
    # file kinds and encodings
    "config is UTF-16": (lambda t: ["run", _file(t, "u.toml", CONFIG.encode("utf-16"))],
                         "UTF-16 text; save it as UTF-8"),
    "config is binary": (lambda t: ["run", _file(t, "b.toml", b"\x00\x01\x02policies")], "binary data"),
    "config is a directory": (lambda t: ["run", str(t)], "is a directory; give a file"),
    "trace is UTF-16": (lambda t: _trace_args(t, "u.csv", TRACE.encode("utf-16")), "UTF-16 text"),
    "trace has invalid UTF-8": (lambda t: _trace_args(t, "l.csv", TRACE.replace("ts", "t\xe9").encode("latin-1")),
                                "line 1: byte 0xe9 is not UTF-8"),
    "trace column twice": (lambda t: _trace_args(t, "d.csv", "ts,in,ts,out\n0,1,2,3\n"),
                           "column 'ts' appears 2 times"),
    "trace key twice (jsonl)": (lambda t: _trace_args(t, "d.jsonl", '{"ts": 0, "ts": 1, "in": 2, "out": 3}\n'),
                                "key 'ts' appears 2 times"),
    "trace 20-digit length": (lambda t: _trace_args(t, "h.csv", "ts,in,out\n0,12345678901234567890,5\n"),
                              "token count '12345678901234567890' must be in [1, 100,000,000]"),
    "instance is a directory": (lambda t: ["solve", str(t)], "is a directory; give a file"),
    "instance is UTF-16": (lambda t: ["solve", _file(t, "u.json", json.dumps(INSTANCE).encode("utf-16"))],
                           "UTF-16 text"),
    "instance requests a string": (lambda t: ["solve", _instance(t, requests="abc")],
                                   "requests = 'abc': expected a list of objects"),
    "instance requests hold strings": (lambda t: ["solve", _instance(t, requests=["a", "b"])],
                                       "requests[0] = 'a': expected an object"),
    "instance latency lacks a coefficient": (
        lambda t: ["solve", _instance(t, engine={"kv_blocks": 100, "latency": {"c0": 0.01}})],
        "engine.latency: missing coefficient(s) ['c_ctx', 'c_decode', 'c_prefill']"),
    "instance request too large for the KV cache": (
        lambda t: ["solve", _instance(t, requests=[{**INSTANCE["requests"][0], "prompt_len": 10**6}])],
        "can never fit (raise engine.kv_blocks"),
    "knapsack huge numbers": (lambda t: ["knapsack", _file(t, "k.txt", "1\n2 1 0\n1e30 2\n1 1\n5\n")],
                              "number #5 = 1e30 is out of range"),
    "knapsack is binary": (lambda t: ["knapsack", _file(t, "k.bin", b"\x00\xff\x00")], "binary data"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_exit_2(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a run that wrongly went ahead would write under tmp_path/results
    argv, message = CASES[name]
    code = main(argv(tmp_path))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slosched: error:"), err
    assert message in lines[0]
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name, content", [
    ("bom.csv", ("\ufeff" + TRACE).encode()),
    ("gz.csv.gz", gzip.compress(TRACE.encode())),
    ("gz.jsonl.gz", gzip.compress(b'{"ts": 0, "in": 3, "out": 2}\n{"ts": 1, "in": 4, "out": 5}\n')),
])
def test_bom_and_gzip_traces_read_like_plain_ones(name, content, tmp_path, capsys):
    from experiments.workloads.trace_loader import Columns, load_trace

    trace = load_trace(_file(tmp_path, name, content), Columns("ts", "in", "out"), "s")
    assert len(trace) in (2, 3) and trace.prompt_len.min() >= 3 and trace.arrival[0] == 0.0


def test_compare_policies_take_commas_or_spaces():
    from experiments.cli import build_parser
    from experiments.cli.run import parse_policies

    for argv in (["compare", "--policies", "fcfs,edf"], ["compare", "--policies", "fcfs", "edf"],
                 ["compare", "--policies", "fcfs,", "edf"]):
        args = build_parser().parse_args(argv)
        assert parse_policies(",".join(args.policies)) == ["fcfs", "edf"]


def test_trace_without_a_config_reads_every_row_and_says_what_it_inherits(tmp_path, capsys):
    """The demo's limit (1,000) and rate x2 belong to the demo's trace: a 3-row file runs whole."""
    out = tmp_path / "out"
    code = main(["run", "--trace", _file(tmp_path, "t.csv", TRACE), "--columns", "arrival=ts,prompt=in,output=out",
                 "--policies", "fcfs", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["fcfs"]["requests"] == 3
    note = captured.err.strip().splitlines()
    assert len(note) == 1 and "every row(s) of" in note[0] and "at rate x1" in note[0]
    assert "from demo.toml: class mix latency/throughput/bulk 0.5/0.3/0.2" in note[0]
    config = json.loads((out / "metrics.json").read_text())["config"]["workload"]
    assert "limit" not in config and config["rate_scale"] == 1.0
