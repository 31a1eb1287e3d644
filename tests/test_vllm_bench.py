"""`slosched bench` against the real vLLM OpenAI server (CPU, tiny model) on 127.0.0.1.

The server runs slosched's scheduler with its record (engine_adapter/vllm_record.py): every
token's time as the scheduler stamped it, on the same host clock (perf_counter) as the client.
So the bench's view is checked against the server's own: equal token counts, every token
received after it was produced and within TOKEN_LAG of it, the SLO class the scheduler parsed
from vllm_xargs, DAG children sent only after their parents finished, and Ctrl-C keeping every
request in the output. Run in .venv-vllm with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vllm_required import require_vllm  # noqa: E402

require_vllm()

from engine_adapter.tiny_model import write_tiny_llama  # noqa: E402
from experiments.cli import main  # noqa: E402
from vllm_server import free_port, running_server  # noqa: E402
from experiments.cli.bench import bench_instance  # noqa: E402
from formulations.metrics import score  # noqa: E402
from formulations.schedule import RequestTimeline, Schedule  # noqa: E402

pytestmark = pytest.mark.timeout(1500)  # the first test includes the server's start (START_TIMEOUT)
REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 900.0  # s: the server starts in ~20 s alone, ~8 min on a loaded 2-core box
# Client receipt minus server stamp of one token: HTTP framing, detokenizer-free output
# processing and the event loop; on the shared 2-core CI box a few hundred ms at worst.
TOKEN_LAG = 1.0
CONFIG = """
name = "bench_tiny"
seed = 0
policies = ["edf"]
[workload]
trace = "azure-conv"
limit = {limit}
oversize = "clip"
[workload.mix]
latency = 0.5
throughput = 0.3
bulk = 0.2
[workload.latency]
ttft_rule = "fixed"
ttft = 0.5
read_rate = 40.0
[workload.bulk]
size_min = 2
size_max = 3
slack = 6.0
[vllm]
kv_blocks = 40
block_size = 32
max_num_seqs = 16
max_num_batched_tokens = 256
max_model_len = 512
time_scale = {time_scale}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A vLLM OpenAI server with RecordingSloScheduler (edf); yields (url, record path)."""
    tmp = tmp_path_factory.mktemp("vllm-server")
    model = write_tiny_llama(tmp / "tiny")
    record = tmp / "record.jsonl"
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
           "VLLM_CACHE_ROOT": str(tmp / "cache"), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    additional = {"slosched": {"policy": "edf"}, "slosched_record": str(record)}
    blocks, block_size = 41, 32  # 40 usable + vLLM's null block
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--load-format", "dummy",
           "--skip-tokenizer-init", "--enforce-eager", "--dtype", "float32", "--block-size", str(block_size),
           "--num-gpu-blocks-override", str(blocks), "--kv-cache-memory-bytes", str(2 * blocks * block_size * 2048),
           "--max-model-len", "512", "--max-num-seqs", "16", "--max-num-batched-tokens", "256",
           "--scheduler-cls", "engine_adapter.vllm_record.RecordingSloScheduler",
           "--logits-processors", "engine_adapter.vllm_checks:SloArgsValidator",
           "--additional-config", json.dumps(additional), "--no-enable-prefix-caching",
           "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/v1"
    with running_server(cmd, env, tmp, tmp / "server.log", f"{url}/models", START_TIMEOUT):
        yield url, record


def server_records(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bench_scores_match_the_schedulers_own_record(server, tmp_path, capsys):
    url, record = server
    config = tmp_path / "bench_tiny.toml"
    config.write_text(CONFIG.format(limit=20, time_scale=0.05))
    out = tmp_path / "out"
    code = main(["bench", str(config), "--url", url, "--out", str(out), "--json", "--concurrency", "8"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads(capsys.readouterr().out)
    document = json.loads((out / "bench.json").read_text())
    assert document["statuses"] == {"finished": 20} and metrics["requests"] == 20 and metrics["unfinished"] == 0
    assert document["goodput"] == pytest.approx(metrics["slo_met"] / document["wall_seconds"])
    lines = read_jsonl(out / "schedule-bench.jsonl")
    on_server = server_records(record)
    shift = document["clock_origin"]  # bench clock -> perf_counter
    children = 0
    for line in lines:
        served = on_server[line["id"]]
        assert len(line["token_times"]) == line["output_len"] == len(served["token_times"])  # exact counts
        assert served["class"] == line["class"]  # the SLO reached the scheduler through vllm_xargs
        produced = [t + served["clock_origin"] for t in served["token_times"]]
        received = [t + shift for t in line["token_times"]]
        lags = [r - p for r, p in zip(received, produced, strict=True)]
        assert min(lags) > -1e-3 and max(lags) < TOKEN_LAG, (line["id"], min(lags), max(lags))
        assert line["sent"] + shift <= served["arrival"] + served["clock_origin"] + 1e-3
        for parent in line["parents"]:  # a DAG child reached the server only after its parents finished
            children += 1
            assert served["arrival"] >= on_server[parent]["finish"] - 1e-6
    assert children >= 1
    # Scored on the server's own token times (moved to the bench clock), the run scores the same
    # up to the receipt lag.
    _, instance = bench_instance(argparse.Namespace(config=str(config), trace=None, limit=None, seed=None, time_scale=None))
    timelines = [RequestTimeline(r.id, line["release"],
                                 np.array(on_server[r.id]["token_times"]) + on_server[r.id]["clock_origin"] - shift,
                                 finish=on_server[r.id]["finish"] + on_server[r.id]["clock_origin"] - shift)
                 for r, line in zip(instance.requests, lines, strict=True)]
    truth = score(instance, Schedule(timelines))
    assert truth.unfinished == 0 and truth.requests == metrics["requests"]
    assert abs(truth.mean_qoe - metrics["mean_qoe"]) < 0.05
    assert 0 <= metrics["ttft"]["p50"] - truth.ttft.p50 < TOKEN_LAG


def test_ctrl_c_keeps_every_request(server, tmp_path):
    url, record = server
    config = tmp_path / "bench_tiny.toml"
    config.write_text(CONFIG.format(limit=30, time_scale=1.0))  # arrivals spread over ~20 s
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # SIGINT raises KeyboardInterrupt even if this process was started with SIGINT ignored
    entry = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); " \
            "from experiments.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", entry,
                             "bench", str(config), "--url", url, "--out", str(out), "--json", "--index-base", "1000"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180.0
    while not any(r["index"] >= 1000 for r in server_records(record).values()):  # the replay is under way
        assert proc.poll() is None and time.monotonic() < deadline, "bench ended or never finished a request"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; partial results written" in err
    document = json.loads((out / "bench.json").read_text())
    lines = read_jsonl(out / "schedule-bench.jsonl")
    assert document["interrupted"] and len(lines) == 30  # nothing dropped
    assert sum(document["statuses"].values()) == 30 and document["statuses"].get("not sent", 0) > 0
    for line in lines:
        assert (line["finish"] is not None) == (line["status"] == "finished")
        if line["status"] != "finished":
            assert not line["slo_met"]
    assert document["metrics"]["unfinished"] == 30 - document["statuses"].get("finished", 0)
