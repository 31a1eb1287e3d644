"""benchmarks/gpu_latency_profile.py: the standalone (torch-only) latency profiler, on CPU with a
tiny shape. It lives with the vLLM tests because their environment (.venv-vllm) is the one with
torch; it does not use vLLM."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import nnls as scipy_nnls

from formulations.latency_model import load_profile

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_latency_profile.py"

if importlib.util.find_spec("torch") is None:
    if os.environ.get("CI"):
        raise ImportError("torch is not installed but CI is set: `make test` installs it into .venv-vllm")
    pytest.skip("torch not installed (make test installs it into .venv-vllm)", allow_module_level=True)


@pytest.fixture(scope="module")
def profiler():
    spec = importlib.util.spec_from_file_location("gpu_latency_profile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", range(6))
def test_nnls_matches_scipy(profiler, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(30, 5)) * np.array([1.0, 1e3, 10.0, 1e5, 1e7])
    b = rng.normal(size=30) + a[:, 1] * 1e-3
    mine = np.array(profiler.nnls([tuple(r) for r in a], list(b)))
    theirs, _ = scipy_nnls(a, b)
    assert np.all(mine >= 0)
    # same objective (the optimum is unique here: a has full column rank)
    assert np.sum((a @ mine - b) ** 2) == pytest.approx(np.sum((a @ theirs - b) ** 2), rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-12)


def test_fit_recovers_known_coefficients(profiler):
    truth = dict(c0=4e-3, c_prefill=2e-5, c_decode=1.5e-5, c_ctx=4e-8, c_prefill_ctx=1e-12)
    steps = profiler.grid_steps(profiler.GRIDS["full"], max_len=8192 + 6144)
    seconds = [sum(truth[k] * f for k, f in zip(profiler.COEFFICIENTS, s.features(), strict=True)) for s in steps]
    coef, median_err, p90_err = profiler.fit(steps, seconds)
    for k, v in truth.items():
        assert coef[k] == pytest.approx(v, rel=1e-6), k
    assert median_err < 1e-9 and p90_err < 1e-9


def test_features_match_the_bridge_log_convention(profiler):
    from formulations.latency_model import prefill_pairs

    step = profiler.Step(prefill=100, start=300, decode=7, context=50)
    one, prefill, decode, ctx, pairs = step.features()
    assert (one, prefill, decode) == (1.0, 100.0, 7.0)
    assert pairs == prefill_pairs(300, 100)
    assert ctx == 7 * 51  # the bridge logs start + 1 context tokens per decode (its token included)


def test_tiny_shape_on_cpu_writes_a_loadable_profile(tmp_path):
    # run it as the GPU machine would: a lone copy of the file, isolated from this checkout
    alone = tmp_path / "gpu_latency_profile.py"
    shutil.copy(SCRIPT, alone)
    out = tmp_path / "tiny-cpu.toml"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-I", str(alone), "--preset", "tiny", "--device", "cpu", "--dtype", "fp32", "--grid", "quick",
         "--warmup", "1", "--repeats", "3", "--kv-blocks", "512", "--name", "tiny-cpu", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count(" ms") == 14  # every grid step measured (quick grid: 6 + 6 + 2)
    profile = load_profile(out)
    lat = profile.latency
    assert lat.name == "tiny-cpu" and lat.source.startswith("measured: tiny fp32 on cpu")
    assert lat.c0 > 0  # an iteration costs something even when tiny
    assert (profile.kv_blocks, profile.block_size, profile.token_budget, profile.max_seqs) == (512, 16, 8192, 256)
    # the fit explains the measurements it was made from: a 256-token prefill costs more than a 1-token decode
    assert lat.iteration_time(256, 0, 0, 256 * 257 // 2) > lat.iteration_time(0, 1, 33)


def test_cpu_needs_an_explicit_kv_pool(profiler):
    with pytest.raises(SystemExit, match="--kv-blocks is required"):
        profiler.kv_blocks_available(profiler.PRESETS["tiny"], profiler.DTYPES["fp32"], "cpu", 1024, None)
