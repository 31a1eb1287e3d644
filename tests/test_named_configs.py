"""The named sweep configs load, sweep from light load to overload, and shrink under --quick."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from experiments.config import load_config
from experiments.runner import expand_cells
from experiments.studies.gap_sweep import is_study_config, load_gap_cells
from experiments.sweep.quick import QUICK_RATE_POINTS, QUICK_REQUESTS, quick

CONFIGS = Path(str(resources.files("experiments") / "configs"))
SWEEPS = ["qoe-vs-rate", "qoe-vs-rate-gamma", "qoe-vs-rate-bursts", "mixed-slo", "mixed-slo-small-kv"]


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_config_loads_and_quick_is_small(name):
    config = load_config(CONFIGS / f"{name}.toml")
    assert config.name == name and not is_study_config(CONFIGS / f"{name}.toml")
    assert len(config.sweep.rate_scales) >= 6 and len(config.sweep.seeds) >= 2
    assert {"fcfs", "andes", "slo"} <= set(config.policies)
    q = quick(config)
    assert q.workload.limit == QUICK_REQUESTS and len(q.sweep.seeds) == 1
    assert len(q.sweep.rate_scales) == QUICK_RATE_POINTS
    assert min(q.sweep.rate_scales) == min(config.sweep.rate_scales)
    assert max(q.sweep.rate_scales) == max(config.sweep.rate_scales)  # quick still reaches overload
    assert len(expand_cells(q)) == QUICK_RATE_POINTS * len(config.policies)


def test_latency_only_configs_have_only_latency_requests():
    for name in SWEEPS[:3]:
        mix = load_config(CONFIGS / f"{name}.toml").workload.mix
        assert (mix.latency, mix.throughput, mix.bulk) == (1.0, 0.0, 0.0)


def test_gap_config_is_a_study():
    assert is_study_config(CONFIGS / "gap.toml")
    name, cells = load_gap_cells(CONFIGS / "gap.toml")
    assert name == "gap" and len(cells) == 8 and sum(c.instances for c in cells if c.noise == 0.0) == 100
