"""WorkloadConfig + engine + seed -> a validated Instance.

Randomness comes from one seed split into independent streams (arrivals, classes, latency SLOs,
throughput SLOs, bulk groups), and every per-request parameter is drawn for all requests, so
changing one knob (say the class mix) does not reshuffle the draws of another (the arrivals).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from experiments.errors import ConfigError
from experiments.workloads.trace_loader import Trace, load_trace
from experiments.workloads.arrivals import burst_arrivals, gamma_arrivals, poisson_arrivals
from experiments.workloads.dags import shape_edges
from experiments.workloads.spec import WorkloadConfig
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.request_columns import NumberedIds, RequestColumns
from formulations.requests import CLASS_CODES, Group, RequestClass
from formulations.arithmetic import ceil_div

LATENCY, THROUGHPUT, BULK = (CLASS_CODES[c] for c in (RequestClass.LATENCY, RequestClass.THROUGHPUT, RequestClass.BULK))
_ARRIVALS, _CLASSES, _LATENCY, _THROUGHPUT, _BULK = range(5)


def build_instance(config: WorkloadConfig, engine: EngineSpec, seed: int, trace: Trace | None = None) -> Instance:
    """Build the workload; `trace` may be passed in to avoid re-reading the file per cell."""
    trace = trace if trace is not None else load_trace(config.trace, config.columns, config.time_unit)
    n = len(trace) if config.limit is None else config.limit
    if n > len(trace):
        raise ConfigError(f"workload.limit={config.limit} but trace {config.trace!r} has only {len(trace)} requests")
    streams = [np.random.default_rng([seed, k]) for k in range(5)]
    prompt = trace.prompt_len[:n].copy()
    output = trace.output_len[:n].copy()
    clipped = _fit_kv(prompt, output, engine, config, trace.line[:n], trace.source)
    arrival = draw_arrivals(config, trace.arrival[:n], streams[_ARRIVALS]) / config.rate_scale
    cls = _assign_classes(config, n, streams[_CLASSES])

    ttft = config.latency.targets(prompt)
    read_rate = config.latency.read_rate.sample(streams[_LATENCY], n)
    slack = config.throughput.slack.sample(streams[_THROUGHPUT], n)
    groups = _cut_groups(config, np.flatnonzero(cls == BULK), streams[_BULK])

    # bulk members are submitted together at their group's first member's arrival
    group_of = np.full(n, -1, dtype=np.int64)
    for g, draft in enumerate(groups):
        group_of[draft.members] = g
        arrival[draft.members] = arrival[draft.members[0]]
    order = np.argsort(arrival, kind="stable")  # ties keep group members in topological order
    ids = NumberedIds("r", n)  # request k (in arrival order) is r{k}
    position = np.empty(n, dtype=np.int64)  # of each trace row, in arrival order
    position[order] = np.arange(n)

    ordered_cls = cls[order]
    requests = RequestColumns(
        ids=ids, cls=ordered_cls, arrival=arrival[order], prompt_len=prompt[order].astype(np.int64),
        output_len=output[order].astype(np.int64),
        ttft_target=np.where(ordered_cls == LATENCY, ttft[order], np.nan),
        read_rate=np.where(ordered_cls == LATENCY, read_rate[order], np.nan),
        slack_ratio=np.where(ordered_cls == THROUGHPUT, slack[order], np.nan),
        group=np.where(ordered_cls == BULK, group_of[order], -1), group_ids=tuple(f"g{g}" for g in range(len(groups))),
        **_content(trace, order, prompt[order] + output[order]),
    )
    group_objs = tuple(
        Group(id=f"g{g}", members=tuple(ids[k] for k in position[d.members].tolist()),
              arrival=float(arrival[d.members[0]]), slack_ratio=d.slack,
              edges=tuple((ids[int(position[d.members[a]])], ids[int(position[d.members[b]])]) for a, b in d.edges))
        for g, d in enumerate(groups)
    )
    meta = {
        "workload": asdict(config),
        "seed": seed,
        "trace_lines": [int(trace.line[i]) for i in order],
        "clipped": [ids[k] for k in sorted(int(position[i]) for i in clipped)],
        "group_shapes": {f"g{g}": d.shape for g, d in enumerate(groups)},
    }
    return Instance(engine=engine, requests=requests, groups=group_objs, meta=meta)


def _content(trace: Trace, order: np.ndarray, tokens: np.ndarray) -> dict[str, object]:
    """A trace's hash ids as the requests' content ids (cut to each request's tokens if clipped;
    none for a request whose row has none)."""
    if trace.hash_ids is None:
        return {}
    block = trace.hash_block
    content = [trace.hash_ids[i][: ceil_div(int(t), block)] or None for i, t in zip(order.tolist(), tokens.tolist())]
    return {"content_ids": content, "content_block": block}


@dataclass(frozen=True)
class _GroupDraft:
    members: np.ndarray  # request positions (pre-sort), in DAG topological order
    shape: str
    edges: list[tuple[int, int]]  # between positions in `members`
    slack: float


def _fit_kv(prompt: np.ndarray, output: np.ndarray, engine: EngineSpec, config: WorkloadConfig,
            lines: np.ndarray, source: str) -> list[int]:
    """Requests whose peak KV (prompt+output-1 tokens) exceeds the cache: error, or clip in place."""
    capacity = engine.kv_blocks * engine.block_size  # tokens; the peak is prompt + output - 1
    too_big = np.flatnonzero(prompt + output - 1 > capacity)
    if len(too_big) and config.oversize == "error":
        i = too_big[0]
        raise ConfigError(
            f"{source}: line {lines[i]}: prompt+output={prompt[i] + output[i]} tokens can never fit the KV cache "
            f"({engine.kv_blocks} blocks x {engine.block_size} = {capacity} tokens); {len(too_big)} request(s) "
            "this large: raise engine.kv_blocks or set workload.oversize = \"clip\""
        )
    for i in too_big:  # keep the output (what the user waits for), shorten the prompt, then the output
        output[i] = min(output[i], capacity)
        prompt[i] = capacity + 1 - output[i] if output[i] < capacity else 1
    return [int(i) for i in too_big]


def draw_arrivals(config: WorkloadConfig, trace_arrival: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(trace_arrival)
    if config.arrivals == "trace":
        return trace_arrival.astype(np.float64)
    rate = config.rate
    if rate is None:
        span = float(trace_arrival[-1] - trace_arrival[0])
        if n < 2 or span <= 0:
            raise ConfigError("workload.rate is needed: the trace rows used give no mean rate")
        rate = (n - 1) / span
    if config.arrivals == "poisson":
        return poisson_arrivals(rng, n, rate)
    if config.arrivals == "gamma":
        return gamma_arrivals(rng, n, rate, config.cv)
    return burst_arrivals(rng, n, rate, config.burst_on, config.burst_off)


def _assign_classes(config: WorkloadConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """Class codes with exact counts (largest remainder of mix x n), in random positions."""
    fractions = np.array([config.mix.latency, config.mix.throughput, config.mix.bulk])
    counts = np.floor(fractions * n).astype(np.int64)
    remainder = fractions * n - counts
    for k in np.argsort(-remainder, kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    return rng.permutation(np.repeat(np.arange(3, dtype=np.int8), counts))


def _cut_groups(config: WorkloadConfig, bulk: np.ndarray, rng: np.random.Generator) -> list[_GroupDraft]:
    """Cut consecutive bulk requests into groups of random size and shape."""
    spec = config.bulk
    names = sorted(spec.shapes)
    weights = np.array([spec.shapes[s] for s in names], dtype=np.float64)
    weights /= weights.sum()
    groups = []
    pos = 0
    while pos < len(bulk):
        size = int(rng.integers(spec.size_min, spec.size_max + 1))
        members = bulk[pos: pos + size]
        shape = names[int(rng.choice(len(names), p=weights))]
        slack = float(spec.slack.sample(rng, 1)[0])
        groups.append(_GroupDraft(members, shape, shape_edges(shape, len(members), spec.branching), slack))
        pos += size
    return groups
