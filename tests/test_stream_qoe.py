"""stream_qoe.fold: lag and delay area caught up lazily equal the closed form on all tokens."""

from __future__ import annotations

import numpy as np
import pytest

from engine_adapter.simulator.request_state import LiveState
from engine_adapter.simulator.stream_qoe import fold
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import LatencyModel
from formulations.qoe import token_lateness
from formulations.requests import Request, RequestClass

SPEC = EngineSpec(kv_blocks=100, latency=LatencyModel(c0=0.01, c_prefill=0.001, c_decode=0.002, c_ctx=0.0001),
                  block_size=4, token_budget=8, max_seqs=4)


def live_state(rng: np.random.Generator, n: int) -> tuple[Instance, LiveState]:
    reqs = []
    for i in range(n):
        if i % 4 == 3:
            reqs.append(Request(f"t{i}", RequestClass.THROUGHPUT, 0.0, 5, int(rng.integers(1, 40)), slack_ratio=2.0))
        else:
            reqs.append(Request(f"r{i}", RequestClass.LATENCY, float(rng.uniform(0, 1)), 5, int(rng.integers(1, 40)),
                                ttft_target=float(rng.choice([0.05, 0.5])), read_rate=float(rng.choice([5.0, 40.0]))))
    inst = Instance(SPEC, tuple(reqs))
    state = LiveState(inst, np.zeros((n, 1)))
    state.add(np.arange(n), 0.0)
    return inst, state


@pytest.mark.parametrize("seed", range(6))
def test_fold_in_random_chunks_matches_token_lateness(seed: int) -> None:
    rng = np.random.default_rng(seed)
    inst, state = live_state(rng, 9)
    # delivery times with gaps that shrink and grow (not convex: the running max matters)
    times = {i: r.arrival + np.cumsum(rng.choice([0.01, 0.05, 0.4], r.output_len)) for i, r in enumerate(inst.requests)}
    for i, t in times.items():
        base = int(state.token_base[state.slot_of[i]])  # its segment in the token arena
        state.token_times[base:base + len(t)] = t
    checked = 0
    while True:
        live = np.flatnonzero(state.generated[:9] < state.output_len[:9])
        if len(live) == 0:
            break
        for s in live.tolist():  # each request delivers 0 to 5 more tokens before the next fold
            state.generated[s] = min(state.output_len[s], state.generated[s] + int(rng.integers(0, 6)))
        fold(state)
        for s in range(9):
            r = inst.requests[s]
            g = int(state.generated[s])
            if r.cls is not RequestClass.LATENCY:
                assert state.lag[s] == 0.0 and state.delay_area[s] == 0.0  # other classes are left alone
                continue
            late = token_lateness(times[s][:g], r.arrival, r.ttft_target, r.read_rate)
            assert state.delay_area[s] == pytest.approx(late.sum(), rel=1e-12, abs=1e-12)
            assert state.lag[s] == pytest.approx(late[-1] if g else 0.0, rel=1e-12, abs=1e-12)  # (j/r vs j*(1/r))
            checked += g > 0 and late.sum() > 0
    assert checked > 10
