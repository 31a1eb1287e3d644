"""serve-eval's config handling and workload sizing (no vLLM needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.cli.serve_eval import load
from experiments.errors import ConfigError
from experiments.studies.serve_eval import ServeSettings, build_workload

CONFIG = Path(__file__).parents[1] / "experiments" / "configs" / "serve_tiny.toml"


def test_shipped_config_loads_and_fits_the_model_context():
    config, serve = load(str(CONFIG))
    assert serve.max_model_len == 512 and serve.time_scale == 0.03 and config.policies
    instance = build_workload(config, serve)
    assert len(instance.requests) == config.workload.limit
    assert max(r.prompt_len + r.output_len for r in instance.requests) <= serve.max_model_len
    assert instance.meta["clipped"], "the trace's long prompts are clipped to the tiny model's context"


def test_wrong_vllm_keys_and_values_are_named(tmp_path):
    text = CONFIG.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("kv_blocks = 40", "kv_blocks = 40\ngpu = 1"))
    with pytest.raises(ConfigError, match="gpu"):
        load(str(bad))
    with pytest.raises(ConfigError, match="block_size=48"):
        ServeSettings(block_size=48)
    with pytest.raises(ConfigError, match="time_scale"):
        ServeSettings(time_scale=0)
