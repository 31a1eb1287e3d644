"""The README's OpenAI-server recipe, run as written on 127.0.0.1 with the tiny model: good requests
are served, a malformed per-request SLO gets HTTP 400 naming the field, and the server keeps
serving after it (the bad request never reaches the engine core, where it would be fatal).

One real server process for the module (its start takes 20 s to minutes on a loaded 2-core
machine); every wait is bounded and the process is stopped by its own pid.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_required import require_vllm  # noqa: E402

require_vllm()

import httpx  # noqa: E402

from vllm_server import free_port, running_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START_SECONDS = 600.0  # the server's start on a shared 2-core machine
REQUEST_SECONDS = 120.0
MAX_TOKENS = 6


def readme_recipe(model_dir: Path, port: int) -> list[str]:
    """The server command exactly as the README's CPU recipe gives it, with this test's model
    directory and port (a test that runs something else would not prove the recipe)."""
    text = (ROOT / "README.md").read_text()
    start = text.index("```\n# recipe: openai-server-cpu") + len("```\n")
    block = text[start:text.index("```", start)]
    lines = [line for line in block.splitlines() if line and not line.startswith("#")]
    build, serve = lines[0], " ".join(line.rstrip("\\").strip() for line in lines[1:])
    assert build == "python -m engine_adapter.tiny_model /tmp/tiny-llama", build
    serve = serve.replace("/tmp/tiny-llama", str(model_dir)).replace("--port 8000", f"--port {port}")
    argv = shlex.split(serve)
    assert argv[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"], argv[:3]
    return [sys.executable, *argv[1:]]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("tiny-llama")
    subprocess.run([sys.executable, "-m", "engine_adapter.tiny_model", str(model_dir)], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1"}
    base = f"http://127.0.0.1:{port}"
    with running_server(readme_recipe(model_dir, port), env, ROOT, log, f"{base}/health", START_SECONDS) as proc:
        yield base, str(model_dir), proc


def complete(base: str, model: str, slo) -> httpx.Response:
    body = {"model": model, "prompt": list(range(3, 40)), "max_tokens": MAX_TOKENS, "ignore_eos": True,
            "temperature": 0.0}
    if slo is not None:
        body["vllm_xargs"] = {"slosched": slo if isinstance(slo, str) else json.dumps(slo)}
    return httpx.post(f"{base}/v1/completions", json=body, timeout=REQUEST_SECONDS)


def test_good_requests_are_served(server):
    base, model, _ = server
    # a client's own length prediction, at levels other than the predictor's: read off its
    # quantile function in the engine core, which must not stop on it
    predicted = {"class": "throughput", "deadline_in": 30, "pred": [4.0, 9.0], "levels": [0.3, 0.7]}
    for slo in ({"class": "latency", "ttft_target": 1.0, "read_rate": 5.0}, {"class": "throughput", "deadline_in": 30},
                predicted, None):
        reply = complete(base, model, slo)
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] == MAX_TOKENS


@pytest.mark.parametrize(("slo", "named"), [
    ({"class": "latncy"}, "slosched.class='latncy'"),
    ({"class": "latency", "ttft_target": 1.0}, "read_rate"),
    ("{not json", "not JSON"),
    ({"class": "throughput", "deadline_in": 30, "pred": ["many"], "levels": [0.5]}, "slosched.pred='many'"),
    ({"class": "throughput", "deadline_in": 30, "pred": [4.0], "levels": "median"}, "slosched.levels='median'"),
    ({"class": "throughput", "deadline_in": 30, "pred": [9.0, 4.0], "levels": [0.5, 0.9]}, "non-decreasing"),
    ({"class": "throughput", "deadline_in": 30, "pred": [4.0, 9.0], "levels": [0.5, 1.5]}, "strictly increasing"),
])
def test_a_malformed_slo_fails_alone_and_the_server_keeps_serving(server, slo, named):
    base, model, proc = server
    reply = complete(base, model, slo)
    assert reply.status_code == 400, reply.text
    assert named in reply.json()["error"]["message"]
    assert proc.poll() is None
    after = complete(base, model, {"class": "latency", "ttft_target": 1.0, "read_rate": 5.0})
    assert after.status_code == 200, after.text
    assert after.json()["usage"]["completion_tokens"] == MAX_TOKENS
