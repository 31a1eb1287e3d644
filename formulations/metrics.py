"""`score(instance, schedule) -> Metrics`: the one scoring function every policy and solver uses.

SLO attainment counts each latency or throughput request once and a bulk group as its number of
members, all or nothing (docs/DESIGN.md, "Objective"). A request that did not complete scores QoE 0
and misses its SLO; it is counted in `unfinished`, never dropped. A request the policy rejected
(Plan.reject) misses its SLO too, but is counted in `rejected` with how long its client waited
for the answer (`time_to_reject`, from arrival), apart from requests served late.

A conversation's later turn (Request.after) is judged from when its user sent it, its previous
turn's finish plus its think time (formulations/turns.py), not from its conversation's start: its
QoE ideal times and time to reject count from there (`sent`), as an arrival's do from the arrival;
TTFT and JCT count from the release, as for every request. A turn whose
previous turn was rejected is rejected with it (never released: `release` None), never dropped.
`prefix_hit_rate` is vLLM's prefix-cache hit rate: tokens found in the cache over tokens looked
up, over every admission (a resumed request looks up its prompt and outputs again).
"""

from __future__ import annotations

import math

from dataclasses import asdict, dataclass
from itertools import chain
from typing import Any

import numpy as np

from formulations.instance import Instance
from formulations.qoe import qoe
from formulations.requests import RequestClass
from formulations.schedule import Schedule
from formulations.turns import turn_release

DEFAULT_QOE_THRESHOLD = 0.95


@dataclass(frozen=True)
class RequestOutcome:
    """The scored result of one request (one line of schedule-<policy>.jsonl)."""

    id: str
    cls: str
    group: str | None
    arrival: float
    release: float | None  # None: never released (a DAG child whose parent never finished)
    prompt_len: int
    output_len: int
    ttft_target: float | None
    read_rate: float | None
    deadline: float | None
    token_times: list[float]
    preemptions: int
    finish: float | None
    qoe: float | None
    slo_met: bool
    rejected_at: float | None = None  # when the policy rejected it (unserved)
    after: str | None = None  # a conversation's later turn: its previous turn's id
    sent: float | None = None  # when its client sent it: its arrival, or a later turn's (None: never sent)
    cached_tokens: int = 0  # prefix-cache hit tokens over its admissions
    queried_tokens: int = 0  # tokens it looked up in the prefix cache over its admissions

    def to_dict(self) -> dict[str, Any]:
        """Field dict with `class` for `cls`. Shallow: `asdict` would deep-copy every token time
        (about 10 s for the 4 million of the full azure-conv trace); token_times is shared."""
        data = dict(self.__dict__)
        data["class"] = data.pop("cls")
        return data


@dataclass(frozen=True)
class Percentiles:
    mean: float | None
    p50: float | None
    p99: float | None
    p90: float | None = None

    @classmethod
    def of(cls, values: np.ndarray) -> Percentiles:
        """Mean, median, p99 and p90 of `values`, which it reorders (no copy of a large array)."""
        if len(values) == 0:
            return cls(None, None, None)
        mean = float(values.mean())
        p50, p90, p99 = np.percentile(values, [50, 90, 99], overwrite_input=True)
        return cls(mean, float(p50), float(p99), float(p90))


@dataclass(frozen=True)
class Metrics:
    attainment: float  # share of requests whose SLO is met (bulk groups all or nothing)
    attainment_by_class: dict[str, float | None]  # None where the class has no request
    slo_met: int
    requests: int
    mean_qoe: float | None  # over latency requests
    qoe_at_threshold: float | None  # share of latency requests with QoE >= threshold
    ttft: Percentiles
    tbt: Percentiles
    jct: Percentiles
    throughput: float  # output tokens per second over the run's span
    preemptions: int
    unfinished: int  # neither completed nor rejected
    rejected: int = 0  # rejected by the policy (SLO missed, client told at once)
    served_late: int = 0  # completed, SLO missed
    time_to_reject: Percentiles = Percentiles(None, None, None)  # s from arrival to rejection
    prefix_hit_rate: float = 0.0  # prefix-cache hit tokens / looked-up tokens (0: nothing looked up)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def request_outcomes(instance: Instance, schedule: Schedule, qoe_threshold: float = DEFAULT_QOE_THRESHOLD,
                     token_lists: bool = True) -> list[RequestOutcome]:
    """Score every request; bulk members share their group's all-or-nothing verdict.
    token_lists=False keeps each `token_times` a float64 view of the schedule's (for a caller
    that streams outcomes to a file: no Python float per token held for the whole run)."""
    return _outcomes(instance, schedule, qoe_threshold, token_lists=token_lists)


def _outcomes(instance: Instance, schedule: Schedule, qoe_threshold: float, token_lists: bool) -> list[RequestOutcome]:
    """request_outcomes; token_lists=False keeps each token_times as the float64 array it is
    (only inside `score`: the millions of Python floats of a full trace cost more memory and
    time than the rest of the scoring)."""
    if len(schedule.timelines) != len(instance.requests):
        raise ValueError(f"schedule has {len(schedule.timelines)} timelines for {len(instance.requests)} requests")
    group_met: dict[str, bool] = {}
    for g in instance.groups:
        deadline = instance.group_deadlines[g.id]
        finishes = [schedule.timelines[instance.index[m]].finish for m in g.members]
        group_met[g.id] = all(f is not None and f <= deadline + 1e-9 for f in finishes)
    outcomes = []
    cache = schedule.meta.get("prefix_cache", {})
    hits, queries = cache.get("hits_of", {}), cache.get("queries_of", {})
    for req, tl in zip(instance.requests, schedule.timelines, strict=True):
        if tl.request_id != req.id:
            raise ValueError(f"schedule timeline {tl.request_id!r} is not aligned with request {req.id!r}")
        times = np.asarray(tl.token_times, dtype=np.float64)
        finished = tl.finish is not None and len(times) >= req.output_len
        sent = req.arrival if req.after is None else _sent(instance, schedule, req)
        deadline = instance.deadline(req)
        value = None
        if req.cls is RequestClass.LATENCY:
            value = qoe(times, req.output_len, sent, req.ttft_target, req.read_rate)
            met = finished and value >= qoe_threshold
        elif req.cls is RequestClass.THROUGHPUT:
            met = finished and tl.finish <= deadline + 1e-9
        else:
            met = group_met[req.group]
        outcomes.append(RequestOutcome(
            id=req.id, cls=req.cls.value, group=req.group, arrival=req.arrival,
            release=None if math.isnan(tl.release) else tl.release,
            prompt_len=req.prompt_len, output_len=req.output_len, ttft_target=req.ttft_target,
            read_rate=req.read_rate, deadline=deadline, token_times=times.tolist() if token_lists else times,
            preemptions=len(tl.preemptions), finish=tl.finish if finished else None, qoe=value, slo_met=bool(met),
            rejected_at=tl.rejected, after=req.after, sent=sent, cached_tokens=int(hits.get(req.id, 0)),
            queried_tokens=int(queries.get(req.id, 0)),
        ))
    return outcomes


def _sent(instance: Instance, schedule: Schedule, req) -> float | None:
    """When a later turn's user sent it: its previous turn's finish plus its think time."""
    finish = schedule.timelines[instance.index[req.after]].finish
    return None if finish is None else turn_release(finish, req.think_time, instance.engine.slot_time)


def score(instance: Instance, schedule: Schedule, qoe_threshold: float = DEFAULT_QOE_THRESHOLD) -> Metrics:
    return summarize(_outcomes(instance, schedule, qoe_threshold, token_lists=False), qoe_threshold)


def summarize(outcomes: list[RequestOutcome], qoe_threshold: float = DEFAULT_QOE_THRESHOLD) -> Metrics:
    met = np.array([o.slo_met for o in outcomes], dtype=bool)
    classes = np.array([o.cls for o in outcomes], dtype=object)
    by_class: dict[str, float | None] = {}
    for cls in RequestClass:
        mask = classes == cls.value
        by_class[cls.value] = float(met[mask].mean()) if mask.any() else None
    qoes = np.array([o.qoe for o in outcomes if o.qoe is not None])
    done = [o for o in outcomes if o.finish is not None]
    rejected = np.array([o.rejected_at - (o.arrival if o.sent is None else o.sent) for o in outcomes
                         if o.rejected_at is not None])
    ttft = np.array([o.token_times[0] - o.release for o in done])
    jct = np.array([o.finish - o.release for o in done])
    tbt = _gaps([o.token_times for o in done])
    tokens = sum(len(o.token_times) for o in outcomes)
    start = min((o.arrival for o in outcomes), default=0.0)
    end = max((o.finish for o in done), default=start)
    return Metrics(
        attainment=float(met.mean()) if len(met) else 0.0,
        attainment_by_class=by_class,
        slo_met=int(met.sum()),
        requests=len(outcomes),
        mean_qoe=float(qoes.mean()) if len(qoes) else None,
        qoe_at_threshold=float((qoes >= qoe_threshold).mean()) if len(qoes) else None,
        ttft=Percentiles.of(ttft),
        tbt=Percentiles.of(tbt),
        jct=Percentiles.of(jct),
        throughput=tokens / (end - start) if end > start else 0.0,
        preemptions=sum(o.preemptions for o in outcomes),
        unfinished=len(outcomes) - len(done) - len(rejected),
        rejected=len(rejected),
        served_late=sum(not o.slo_met for o in done),
        time_to_reject=Percentiles.of(rejected),
        prefix_hit_rate=_hit_rate(outcomes),
    )


def _hit_rate(outcomes: list[RequestOutcome]) -> float:
    queried = sum(o.queried_tokens for o in outcomes)
    return sum(o.cached_tokens for o in outcomes) / queried if queried else 0.0


def _gaps(token_times: list[list[float]] | list[np.ndarray], batch: int = 4096) -> np.ndarray:
    """Time between consecutive tokens of each request, all requests concatenated in order.

    Filled a batch of requests at a time into one preallocated array: one float per token is
    the whole cost (a full trace has millions of tokens), not the three a concatenate, a diff
    and a mask would hold at once. Within a batch: one difference over the flattened times,
    minus the differences across request boundaries."""
    lengths = np.fromiter(map(len, token_times), dtype=np.int64, count=len(token_times))
    gaps = np.empty(int(np.maximum(lengths - 1, 0).sum()), dtype=np.float64)
    filled = 0
    for lo in range(0, len(token_times), batch):
        chunk, sizes = token_times[lo:lo + batch], lengths[lo:lo + batch]
        if isinstance(chunk[0], np.ndarray):
            flat = np.concatenate(chunk)
        else:
            flat = np.fromiter(chain.from_iterable(chunk), dtype=np.float64, count=int(sizes.sum()))
        within = np.ones(max(len(flat) - 1, 0), dtype=bool)
        starts = np.cumsum(sizes)[:-1]  # index of each later request's first token
        within[starts[(starts > 0) & (starts < len(flat))] - 1] = False
        step = np.diff(flat)[within]
        gaps[filled:filled + len(step)] = step
        filled += len(step)
    return gaps
