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


def test_beyond_the_oracle_the_online_gap_is_against_the_upper_bound():
    """serve_tiny's 40 requests exceed oracle_max_iterations on vLLM: the gap's upper end comes
    from the attainment bound on the run's engine model, and is a number."""
    from engine_adapter.simulator import simulate
    from formulations.metrics import score
    from experiments.studies.serve_eval import PolicyResult, _upper_bound, summary_rows
    from solvers.bounds.interval_lp import BoundViolated
    from solvers.policies.registry import make_policy

    config, serve = load(str(CONFIG))
    instance = build_workload(config, serve)
    simulated = score(instance, simulate(instance, make_policy("edf")))
    bound = _upper_bound(instance, simulated.slo_met, serve, config)
    assert simulated.slo_met <= bound["bound"] <= len(instance.requests)
    online = {"attainment": simulated.attainment}
    result = PolicyResult("edf", online, simulated.to_dict(), {"skipped": "too many iterations", "upper_bound": bound},
                          {}, {})
    assert result.gap == pytest.approx(1 - simulated.attainment / bound["attainment"])
    assert summary_rows([result])[0][-1] == f"<= {result.gap:.1%}"
    with pytest.raises(BoundViolated):
        _upper_bound(instance, bound["bound"] + 1, serve, config)
