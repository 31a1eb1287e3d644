"""Prefix caching in the simulator: hits at admission skip prefill, cached blocks of finished
requests survive while free and are evicted least-recently-used (tail blocks first), and the
switch is a no-op for requests without content ids."""

from __future__ import annotations

import numpy as np
import pytest

from engine_adapter.simulator import simulate
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import LatencyModel
from formulations.requests import Request, RequestClass, ValidationError
from solvers.policies.registry import make_policy

LAT = LatencyModel(c0=0.01, c_prefill=1e-4, c_decode=1e-3, c_ctx=1e-6)


def engine(**kw) -> EngineSpec:
    base = dict(kv_blocks=6, latency=LAT, block_size=4, token_budget=64, max_seqs=4, slot_time=1.0)
    base.update(kw)
    return EngineSpec(**base)


def req(rid: str, arrival: float, prompt: int, output: int, ids=None) -> Request:
    return Request(id=rid, cls=RequestClass.THROUGHPUT, arrival=arrival, prompt_len=prompt, output_len=output,
                   slack_ratio=100.0, content_ids=ids, content_block=4 if ids is not None else None)


def run(instance: Instance, policy: str = "fcfs"):
    return simulate(instance, make_policy(policy), record_iterations=True)


# A: 10 prompt + 3 output tokens, 12 computed (3 full blocks cached: ids 1, 2, 3).
A = req("a", 0.0, 10, 3, (1, 2, 3, 4))
B_IDS = (1, 2, 3, 9, 10)  # B continues A's first 12 tokens with its own


def test_a_later_turn_hits_the_earlier_turns_blocks_and_skips_their_prefill() -> None:
    b = req("b", 10.0, 16, 2, B_IDS)
    spec = engine(kv_blocks=20, token_budget=4)  # 4 tokens per iteration: prefill length shows in TTFT
    on = run(Instance(spec, (A, b)))
    off = run(Instance(spec.with_(enable_prefix_caching=False), (A, b)))
    stats = on.meta["prefix_cache"]
    assert (stats["hit_tokens"], stats["query_tokens"], stats["hits_of"]) == (12, 10 + 16, {"a": 0, "b": 12})
    assert "prefix_cache" not in off.meta
    ttft = [tl.token_times[0] - tl.release for tl in (on.timelines[1], off.timelines[1])]
    assert ttft == [1.0, 4.0]  # 4 tokens left to prefill instead of 16


def test_freed_blocks_are_evicted_least_recently_used_tail_first() -> None:
    """After A finishes its blocks [0, 1, 2] join the free queue tail as 2, 1, 0 behind the three
    never used; C (16 own tokens, 4 blocks) takes 3, 4, 5 and then A's last block: B then hits
    A's first two blocks only."""
    c = req("c", 5.0, 16, 1)
    b = req("b", 10.0, 16, 2, B_IDS)
    s = run(Instance(engine(), (A, c, b)))
    assert s.meta["prefix_cache"]["hit_tokens"] == 8


def test_a_request_at_least_recomputes_its_last_token() -> None:
    """Identical block-aligned prompts: the second hits all blocks but the last one."""
    first = req("x", 0.0, 8, 1, (5, 6))
    second = req("y", 5.0, 8, 1, (5, 6))
    s = run(Instance(engine(kv_blocks=20), (first, second)))
    assert s.meta["prefix_cache"]["hit_tokens"] == 4


def test_switch_is_a_no_op_without_content_ids() -> None:
    reqs = (req("p", 0.0, 10, 5), req("q", 0.5, 14, 3), req("r", 1.0, 6, 7))
    on = run(Instance(engine(), reqs))
    off = run(Instance(engine(enable_prefix_caching=False), reqs))
    assert "prefix_cache" not in on.meta
    for a, b in zip(on.timelines, off.timelines, strict=True):
        assert np.array_equal(a.token_times, b.token_times) and a.preemptions == b.preemptions


def test_swap_mode_with_content_is_refused_clearly() -> None:
    with pytest.raises(ValidationError, match="preemption='recompute' only"):
        run(Instance(engine(preemption="swap"), (A,)))


@pytest.mark.parametrize("policy", ["fcfs", "sjf", "edf", "andes", "slo", "gain-density", "ltr"])
def test_view_shows_cached_tokens_of_waiting_requests(policy: str) -> None:
    """Every policy runs with hits; the view's `cached` column is what the hit skips."""
    seen: list[int] = []
    inner = make_policy(policy)

    class Spy(type(inner)):
        def decide(self, view):
            assert view.cached is not None and np.all(view.cached[view.resident] == 0)
            seen.extend(view.cached.tolist())
            return super().decide(view)

    spy = Spy.__new__(Spy)
    spy.__dict__.update(inner.__dict__)
    b = req("b", 10.0, 16, 2, B_IDS)
    s = simulate(Instance(engine(kv_blocks=20), (A, b)), spy)
    assert 12 in seen
    assert all(len(tl.token_times) == r.output_len for tl, r in zip(s.timelines, (A, b), strict=True))
