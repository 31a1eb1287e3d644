"""Experiment configs: TOML -> dataclasses, round trip, overrides, every wrong key/name/type named."""

from __future__ import annotations

import pytest

from experiments.cli.run import DEMO_CONFIG
from experiments.config import config_from_dict, load_config, with_overrides
from experiments.errors import ConfigError
from experiments.workloads.trace_loader import Columns
from experiments.workloads import Dist
from solvers.policies.registry import POLICIES


def test_demo_config_loads_with_its_values():
    config = load_config(DEMO_CONFIG)
    assert config.name == "demo" and sorted(config.policies) == sorted(POLICIES)  # the demo runs every policy
    assert config.workload.mix.bulk == 0.2 and config.workload.limit == 1000
    assert config.workload.latency.read_rate == Dist(kind="choice", values=(4.8, 3.3), probs=(0.8, 0.2))
    assert config.workload.bulk.slack == Dist(kind="fixed", value=10.0)  # a bare number means fixed
    assert config.engine.build().kv_blocks == 1500
    assert config.predictor.name == "noisy" and config.predictor.params == {"sigma": 0.5}


def test_to_dict_round_trips():
    config = load_config(DEMO_CONFIG)
    assert config_from_dict(config.to_dict()) == config
    custom = config_from_dict({"policies": ["edf"], "workload": {"columns": {"arrival": "ts"}, "time_unit": "ms"},
                               "engine": {"slot_time": 0.05}, "sweep": {"seeds": [1, 2]}})
    assert custom.workload.columns == Columns(arrival="ts")
    assert custom.engine.build().slot_time == 0.05
    assert config_from_dict(custom.to_dict()) == custom


def test_overrides_replace_only_what_is_given():
    config = load_config(DEMO_CONFIG)
    changed = with_overrides(config, policies=["sjf"], limit=50, rate_scale=3.0, seed=7,
                             columns={"output": "out"}, time_unit="ms")
    assert changed.policies == ("sjf",) and changed.seed == 7
    assert (changed.workload.limit, changed.workload.rate_scale, changed.workload.time_unit) == (50, 3.0, "ms")
    assert changed.workload.columns == Columns(output="out")
    assert changed.workload.mix == config.workload.mix and changed.engine == config.engine
    assert with_overrides(config) == config


@pytest.mark.parametrize("data, message", [
    ({}, "policies = None: need a non-empty list"),
    ({"policies": ["fcfs"], "seeds": 3}, "[config] unknown key 'seeds'"),
    ({"policies": ["fcfs"], "seed": 1.5}, "seed = 1.5: input should be a valid integer"),
    ({"policies": ["fcfs"], "seed": -1}, "seed = -1: input should be greater than or equal to 0"),
    ({"policies": ["fcfs"], "name": "../../x"}, "name = '../../x': use letters, digits"),
    ({"policies": ["fcfs"], "engine": {"kv_blocks": True}}, "engine.kv_blocks = True: input should be a valid integer"),
    ({"policies": ["fcfs"], "sweep": {"seeds": [0, 0]}}, "sweep.seeds = [0, 0]: 0 is listed twice"),
    ({"policies": ["fcfs"], "sweep": {"seeds": [-2]}}, "sweep.seeds[0] = -2: input should be greater than or equal to 0"),
    ({"policies": ["fcfs"], "workload": {"cv": 1e-300}}, "workload.cv = 1e-300: must be in [0.01, 100]"),
    ({"policies": ["fcfs"], "workload": {"mix": {"latency": 0.5, "chat": 0.5}}}, "[workload.mix] unknown key 'chat'; valid: latency, throughput, bulk"),
    ({"policies": ["fcfs"], "workload": {"rate_scale": "fast"}}, "workload.rate_scale = 'fast': input should be a valid number"),
    ({"policies": ["fcfs"], "workload": {"latency": {"read_rate": {"kind": "choice"}}}}, "workload.latency.read_rate: choice distribution: choice needs values > 0"),
    ({"policies": ["fcfs"], "workload": {"columns": {"arrival": "t", "tokens": "x"}}}, "[workload.columns] unknown key 'tokens'; valid: arrival, prompt, output"),
    ({"policies": ["fcfs"], "policy_params": {"edf": {}}}, "policy_params: ['edf'] not in policies ['fcfs']"),
    ({"policies": ["edf"], "policy_params": {"edf": {"alpha": 1}}}, "[policy_params.edf] policy 'edf': unknown parameter(s) ['alpha']"),
    ({"policies": ["fcfs"], "predictor": {"name": "noisy", "sigm": 1}}, "[predictor] predictor 'noisy': unknown parameter(s) ['sigm']"),
    ({"policies": ["fcfs"], "engine": {"kv_blocks": 0}}, "[engine] engine: kv_blocks=0 must be a positive integer"),
    ({"policies": ["fcfs"], "sweep": {"rates": [1]}}, "[sweep] unknown key 'rates'; valid: rate_scales, seeds"),
    ({"policies": ["fcfs"], "qoe_threshold": 1.5}, "qoe_threshold=1.5 must be in (0, 1]"),
])
def test_wrong_keys_names_and_types_are_named(data, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert message in str(err.value)


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("policies = [fcfs]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.toml")
