"""Pinned schedules: every simulator speed-up must leave results bit-identical.

The digests below were computed by the simulator in step-by-step mode (fast_forward=False, the
policy asked before every iteration), re-pinned when the engine rules changed on purpose (vLLM's
full-prompt admission gate, no admission in a step that preempted, fcfs as vLLM's queues). A mid-size random instance mixes
the three classes, a bulk DAG, KV tight enough to preempt, and batches both small and large (the
engine may treat them differently); each configuration's schedule (every token time bit for bit,
admissions, preemptions, finish times, iteration count) must hash to the pinned value in both
the fast-forwarding and the step-by-step mode.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from engine_adapter.simulator import simulate
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import LatencyModel
from formulations.requests import Group, Request, RequestClass
from formulations.schedule import Schedule
from solvers.policies.registry import make_policy

LATENCY = LatencyModel(c0=0.004, c_prefill=2e-5, c_decode=1e-4, c_ctx=2e-7, c_prefill_ctx=1e-9)


def reference_instance(slot_time: float | None, preemption: str, n: int = 300, seed: int = 11) -> Instance:
    """Bursty overload: batches from 1 to ~40 requests (median ~28), 10% bulk in one DAG group."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(0.02, n) * rng.choice([0.05, 1.0, 4.0], n))
    requests = []
    bulk = []
    for i in range(n):
        prompt, output = int(rng.integers(1, 600)), int(rng.integers(1, 300))
        kind = rng.random()
        if kind < 0.5:
            requests.append(Request(f"r{i}", RequestClass.LATENCY, float(arrival[i]), prompt, output,
                                    ttft_target=float(rng.choice([0.05, 0.5])), read_rate=float(rng.choice([5.0, 40.0]))))
        elif kind < 0.9:
            requests.append(Request(f"r{i}", RequestClass.THROUGHPUT, float(arrival[i]), prompt, output, slack_ratio=3.0))
        else:
            bulk.append(i)
            requests.append(Request(f"r{i}", RequestClass.BULK, float(arrival[bulk[0]]), prompt, output, group="g"))
    ids = [f"r{i}" for i in bulk]
    edges = tuple((ids[a], ids[b]) for a in range(len(ids)) for b in range(a + 1, len(ids)) if rng.random() < 0.15)
    spec = EngineSpec(kv_blocks=1500, latency=LATENCY, block_size=8, token_budget=1024, max_seqs=64,
                      preemption=preemption, swap_time_per_block=2e-5, slot_time=slot_time)
    return Instance(spec, tuple(requests), (Group("g", tuple(ids), float(arrival[bulk[0]]), 3.0, edges),))


def digest(schedule: Schedule) -> str:
    h = hashlib.sha256()
    h.update(str(schedule.iterations).encode())
    for tl in schedule.timelines:
        h.update(np.ascontiguousarray(tl.token_times, dtype=np.float64).tobytes())
        h.update(np.array(tl.admissions + tl.preemptions + [tl.release, tl.finish], dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


PINNED = {  # policy/timing/preemption: digest (iterations, preemptions in that run)
    "fcfs/latency/recompute": "21107511108bb552",  # 1762 iterations, 97 preemptions
    "fcfs/slotted/swap": "cc86d646d276a0a2",  # 1853 iterations, 107 preemptions
    "sjf/slotted/recompute": "191ca1678c0ba866",  # 1930 iterations, 105 preemptions
    "edf/latency/swap": "ab00162ad5bd80cb",  # 1821 iterations, 107 preemptions
}


@pytest.mark.parametrize("fast_forward", [True, False])
@pytest.mark.parametrize("key", sorted(PINNED))
def test_schedule_matches_pinned_reference(key: str, fast_forward: bool) -> None:
    policy, timing, preemption = key.split("/")
    instance = reference_instance(0.02 if timing == "slotted" else None, preemption)
    schedule = simulate(instance, make_policy(policy), fast_forward=fast_forward)
    assert digest(schedule) == PINNED[key]
