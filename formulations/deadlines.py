"""T_alone and deadlines (docs/DESIGN.md, request classes 2 and 3), from the same engine model.

T_alone(request) is the time the request takes running alone: its prompt in chunks of at most
`token_budget` tokens (the last chunk yields the first token), then one decode iteration per
further token. The simulator charges exactly these iteration times, so a request alone on the
simulator completes exactly T_alone after its arrival (a tested invariant).

T_alone(group) is the makespan of the group alone with each member at its solo speed: the
longest path through the DAG with members weighted by their T_alone. It equals the makespan of a
chain run alone, and is a lower bound for wide groups (whose members would share iterations);
we choose it because it is a property of the group alone, independent of any scheduling policy.
"""

from __future__ import annotations

from collections.abc import Mapping

import networkx as nx

from formulations.engine_spec import EngineSpec
from formulations.latency_model import prefill_pairs
from formulations.requests import Group, Request


def prefill_chunks(spec: EngineSpec, tokens: int) -> list[int]:
    """Chunk sizes of a prefill of `tokens` tokens run alone."""
    full, rest = divmod(tokens, spec.token_budget)
    return [spec.token_budget] * full + ([rest] if rest else [])


def t_alone(spec: EngineSpec, prompt_len: int, output_len: int) -> float:
    """Seconds from start to last token of one request alone on the engine."""
    chunks = prefill_chunks(spec, prompt_len)
    decode_steps = output_len - 1
    if spec.slot_time is not None:
        return (len(chunks) + decode_steps) * spec.slot_time
    lat = spec.latency
    total = 0.0
    start = 0
    for chunk in chunks:
        total += lat.iteration_time(chunk, 0, 0, prefill_pairs(start, chunk))
        start += chunk
    # decode step j (j = 1..n-1) attends prompt_len + j tokens
    ctx_sum = decode_steps * prompt_len + decode_steps * (decode_steps + 1) // 2
    total += decode_steps * (lat.c0 + lat.c_decode) + lat.c_ctx * ctx_sum
    return total


def t_alone_group(spec: EngineSpec, group: Group, requests: Mapping[str, Request]) -> float:
    """Longest path through the group's DAG, each member weighted by its own T_alone."""
    finish: dict[str, float] = {}
    dag = group.dag
    for member in nx.topological_sort(dag):
        req = requests[member]
        ready = max((finish[p] for p in dag.predecessors(member)), default=0.0)
        finish[member] = ready + t_alone(spec, req.prompt_len, req.output_len)
    return max(finish.values(), default=0.0)


def request_deadline(spec: EngineSpec, req: Request) -> float:
    """Completion deadline of a throughput request."""
    assert req.slack_ratio is not None
    return req.arrival + req.slack_ratio * t_alone(spec, req.prompt_len, req.output_len)


def group_deadline(spec: EngineSpec, group: Group, requests: Mapping[str, Request]) -> float:
    """Deadline for the last member of a bulk group."""
    return group.arrival + group.slack_ratio * t_alone_group(spec, group, requests)
