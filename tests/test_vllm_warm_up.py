"""The scheduler loads every compiled rule it and its policy use when it is configured, so no
kernel is compiled (seconds) or loaded from numba's disk cache (milliseconds) in the middle of a
run, where it stalls a step and skews the run's step times. Checked by counting numba's
compilations during runs of the policies over the `serve_tiny` workload (latency, throughput and
bulk DAG groups, tight KV) on the iteration clock, overloaded so that `slo` gives up on and rejects
requests, with and without prefix caching (vLLM's default: on; then the bridge reads each waiting
request's hit and the batch rules take the hits). Skipped only when vLLM is missing outside CI.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from vllm_required import require_vllm  # noqa: E402

require_vllm()

from numba.core import dispatcher  # noqa: E402

from engine_adapter.bridge_config import BridgeConfig  # noqa: E402
from engine_adapter.realized import realize  # noqa: E402
from engine_adapter.vllm_runner import VllmEngine, replay  # noqa: E402
from experiments.cli.serve_eval import load  # noqa: E402
from experiments.studies.serve_eval import build_workload, vllm_settings  # noqa: E402

OURS = ("solvers.", "engine_adapter.", "formulations.")


@pytest.fixture
def compilations(monkeypatch):
    """The (function, signature) of every compile() numba runs for slosched's own kernels."""
    seen: list[tuple[str, str]] = []
    original = dispatcher.Dispatcher.compile

    def compile(self, sig):
        if self.py_func.__module__.startswith(OURS):
            seen.append((f"{self.py_func.__module__}.{self.py_func.__qualname__}", str(sig)))
        return original(self, sig)

    monkeypatch.setattr(dispatcher.Dispatcher, "compile", compile)
    return seen


@pytest.mark.parametrize("prefix_caching", [False, True])
def test_no_kernel_is_compiled_or_loaded_during_a_run(compilations, prefix_caching):
    config, serve = load("experiments/configs/serve_tiny.toml")
    settings = replace(vllm_settings(config, serve), enable_prefix_caching=prefix_caching)
    engine = VllmEngine(settings, BridgeConfig(policy="fcfs", slot_time=0.01))
    base = build_workload(config, serve)
    assert any(g.edges for g in base.groups)  # bulk DAGs: children released when their parents finish
    for name in ("fcfs", "edf", "andes", "slo"):
        engine.configure(BridgeConfig(policy=name, slot_time=0.01))
        instance = realize(base, engine.spec, 0.01)  # 40 requests in 0.24 s: 24 steps
        compilations.clear()
        schedule = replay(engine, instance).schedule
        assert compilations == [], f"{name}: compiled or loaded during the run: {compilations}"
        if name == "slo":
            assert any(t.rejected is not None for t in schedule.timelines)  # the rejection path ran
