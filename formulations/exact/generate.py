"""Seeded small slotted instances for the exact oracle's tests and scaling benchmark.

Requests of all three classes arrive over the first slots; KV capacity is a fraction of what
all requests would hold at their peak together, so `kv_tightness` < 1 forces waiting or
preemption. Every time is a multiple of the slot time or of 1/r, so the model's integer ticks
are exact.
"""

from __future__ import annotations

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.requests import Group, Request, RequestClass
from formulations.arithmetic import ceil_div


def random_instance(seed: int, n_requests: int, *, prompt=(4, 24), output=(2, 8), arrival_slots: int = 6,
                    block_size: int = 4, kv_tightness: float = 0.5, token_budget: int = 32, max_seqs: int = 8,
                    slot_time: float = 0.05, dag_group: int = 0, classes=("latency", "throughput"),
                    slack=(1.5, 2.0, 3.0), ttft_slots=(2, 3, 4), profile: str = "llama3-8b-h100") -> Instance:
    """`dag_group` > 0 adds one bulk group of that many members with a chain-and-fork DAG."""
    rng = np.random.default_rng(seed)
    requests: list[Request] = []
    n_single = n_requests - dag_group
    for i in range(n_single):
        cls = RequestClass(classes[i % len(classes)])
        arrival = float(rng.integers(0, arrival_slots)) * slot_time
        p = int(rng.integers(prompt[0], prompt[1] + 1))
        n = int(rng.integers(output[0], output[1] + 1))
        if cls is RequestClass.LATENCY:
            requests.append(Request(f"r{i}", cls, arrival, p, n, ttft_target=float(rng.choice(ttft_slots)) * slot_time,
                                    read_rate=1.0 / (slot_time * float(rng.choice([1, 2])))))
        else:
            requests.append(Request(f"r{i}", RequestClass.THROUGHPUT, arrival, p, n,
                                    slack_ratio=float(rng.choice(slack))))
    groups = []
    if dag_group:
        arrival = float(rng.integers(0, arrival_slots)) * slot_time
        members = [f"g{j}" for j in range(dag_group)]
        for m in members:
            requests.append(Request(m, RequestClass.BULK, arrival, int(rng.integers(prompt[0], prompt[1] + 1)),
                                    int(rng.integers(output[0], output[1] + 1)), group="G"))
        edges = tuple((members[0], m) for m in members[1:])  # a fork: the root feeds all others
        groups.append(Group("G", tuple(members), arrival, slack_ratio=float(max(slack)), edges=edges))
    peak = sum(ceil_div((r.prompt_len + r.output_len - 1), block_size) for r in requests)
    biggest = max(ceil_div((r.prompt_len + r.output_len - 1), block_size) for r in requests)
    kv = max(biggest, int(peak * kv_tightness))
    engine = EngineSpec.from_profile(profile, kv_blocks=kv, block_size=block_size, token_budget=token_budget,
                                     max_seqs=max_seqs, slot_time=slot_time)
    return Instance(engine, tuple(requests), tuple(groups), meta={"seed": seed, "generator": "exact.generate"})


def scale_instance(seed: int, n_requests: int, iterations: int, kv_tightness: float = 0.3) -> Instance:
    """The oracle-scaling family: `n_requests` requests whose SLOs span about `iterations` slots.

    Arrivals spread over the first 45% of the slots, outputs of 4 to iterations/5 tokens,
    16-token blocks, KV at `kv_tightness` of the total peak demand (tight: waiting or preemption
    is forced), vLLM's default token budget (8192), a mix of all three classes and one forked
    bulk group.
    """
    return random_instance(seed, n_requests, prompt=(16, 128), output=(4, max(8, iterations // 5)),
                           arrival_slots=max(1, int(iterations * 0.45)), block_size=16, kv_tightness=kv_tightness,
                           token_budget=8192, max_seqs=64, slot_time=0.05, dag_group=min(4, n_requests // 5),
                           slack=(1.5, 2.0, 3.0), ttft_slots=(2, 4, 8))


def overloaded_instance(seed: int) -> Instance:
    """Small slotted instances where capacity binds (the bound's validity and tightness family):
    3-5 requests arriving within 2 slots, KV at 35% of the peak demand, slack 1-2x, TTFT 1-2
    slots, a forked DAG group in every fourth."""
    return random_instance(seed, 3 + seed % 3, arrival_slots=2, kv_tightness=0.35, slack=(1.0, 1.3, 2.0),
                           ttft_slots=(1, 2), output=(2, 6), dag_group=3 if seed % 4 == 3 else 0)
