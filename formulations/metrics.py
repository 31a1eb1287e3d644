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
from formulations.percentiles import Percentiles
from formulations.qoe import qoe
from formulations.requests import CLASS_CODES, Request, RequestClass
from formulations.schedule import RequestTimeline, Schedule
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
    group_met = {g.id: group_verdict(instance, g.id, [schedule.timelines[instance.index[m]] for m in g.members])
                 for g in instance.groups}
    outcomes = []
    for req, tl in zip(instance.requests, schedule.timelines, strict=True):
        if tl.request_id != req.id:
            raise ValueError(f"schedule timeline {tl.request_id!r} is not aligned with request {req.id!r}")
        sent = req.arrival if req.after is None else sent_at(instance, req, schedule.timelines[instance.index[req.after]].finish)
        outcomes.append(score_request(instance, req, tl, qoe_threshold, group_met.get(req.group), token_lists, sent))
    return outcomes


def sent_at(instance: Instance, req: Request, previous_finish: float | None) -> float | None:
    """When a later turn's user sent it: its previous turn's finish plus its think time (None:
    the previous turn never finished, so it was never sent)."""
    return None if previous_finish is None else turn_release(previous_finish, req.think_time, instance.engine.slot_time)


def group_verdict(instance: Instance, group: str, timelines: list[RequestTimeline]) -> bool:
    """A bulk group meets its SLO when every member finished by the group's deadline."""
    deadline = instance.group_deadlines[group]
    return all(tl.finish is not None and tl.finish <= deadline + 1e-9 for tl in timelines)


def score_request(instance: Instance, req: Request, tl: RequestTimeline, qoe_threshold: float,
                  group_met: bool | None, token_lists: bool, sent: float | None) -> RequestOutcome:
    """One request's outcome; a bulk member takes its group's verdict `group_met`, a later turn
    is judged from when it was `sent` (its arrival for every other request)."""
    times = np.asarray(tl.token_times, dtype=np.float64)
    finished = tl.finish is not None and len(times) >= req.output_len
    deadline = instance.deadline(req)
    value = None
    if req.cls is RequestClass.LATENCY:
        value = qoe(times, req.output_len, sent, req.ttft_target, req.read_rate)
        met = finished and value >= qoe_threshold
    elif req.cls is RequestClass.THROUGHPUT:
        met = finished and tl.finish <= deadline + 1e-9
    else:
        met = group_met
    return RequestOutcome(
        id=req.id, cls=req.cls.value, group=req.group, arrival=req.arrival,
        release=None if math.isnan(tl.release) else tl.release,
        prompt_len=req.prompt_len, output_len=req.output_len, ttft_target=req.ttft_target,
        read_rate=req.read_rate, deadline=deadline, token_times=times.tolist() if token_lists else times,
        preemptions=len(tl.preemptions), finish=tl.finish if finished else None, qoe=value, slo_met=bool(met),
        rejected_at=tl.rejected, after=req.after, sent=sent, cached_tokens=tl.cached_tokens,
        queried_tokens=tl.queried_tokens,
    )


def score(instance: Instance, schedule: Schedule, qoe_threshold: float = DEFAULT_QOE_THRESHOLD) -> Metrics:
    return summarize(_outcomes(instance, schedule, qoe_threshold, token_lists=False), qoe_threshold)


def summarize(outcomes: list[RequestOutcome], qoe_threshold: float = DEFAULT_QOE_THRESHOLD) -> Metrics:
    columns = OutcomeColumns(len(outcomes))
    for k, o in enumerate(outcomes):
        columns.set(k, o)
    return columns.metrics(Percentiles.of(_gaps([o.token_times for o in outcomes if o.finish is not None])),
                           qoe_threshold)


class OutcomeColumns:
    """What the metrics need of each request's outcome, as arrays in request order, so that a
    long run can be scored one request at a time without keeping the outcomes (the token gaps
    for the TBT are kept by the caller)."""

    def __init__(self, n: int) -> None:
        self.met = np.zeros(n, dtype=bool)
        self.cls = np.zeros(n, dtype=np.int8)
        self.has_qoe = np.zeros(n, dtype=bool)
        self.qoe = np.zeros(n)
        self.done = np.zeros(n, dtype=bool)
        self.rejected = np.zeros(n, dtype=bool)
        self.arrival = np.zeros(n)
        self.ttft = np.zeros(n)  # first token - release, where done
        self.jct = np.zeros(n)  # finish - release, where done
        self.finish = np.zeros(n)
        self.time_to_reject = np.zeros(n)
        self.tokens = np.zeros(n, dtype=np.int64)
        self.preemptions = np.zeros(n, dtype=np.int64)
        self.cached_tokens = np.zeros(n, dtype=np.int64)
        self.queried_tokens = np.zeros(n, dtype=np.int64)

    def set(self, k: int, o: RequestOutcome) -> None:
        self.met[k] = o.slo_met
        self.cls[k] = CLASS_CODES[RequestClass(o.cls)]
        self.arrival[k] = o.arrival
        self.tokens[k] = len(o.token_times)
        self.preemptions[k] = o.preemptions
        self.cached_tokens[k], self.queried_tokens[k] = o.cached_tokens, o.queried_tokens
        if o.qoe is not None:
            self.has_qoe[k], self.qoe[k] = True, o.qoe
        if o.finish is not None:
            self.done[k] = True
            self.ttft[k] = o.token_times[0] - o.release
            self.jct[k] = o.finish - o.release
            self.finish[k] = o.finish
        if o.rejected_at is not None:
            self.rejected[k], self.time_to_reject[k] = True, o.rejected_at - (o.arrival if o.sent is None else o.sent)

    def metrics(self, tbt: Percentiles, qoe_threshold: float) -> Metrics:
        met, done, n = self.met, self.done, len(self.met)
        by_class: dict[str, float | None] = {}
        for cls in RequestClass:
            mask = self.cls == CLASS_CODES[cls]
            by_class[cls.value] = float(met[mask].mean()) if mask.any() else None
        qoes = self.qoe[self.has_qoe]
        rejected = self.time_to_reject[self.rejected]
        tokens = int(self.tokens.sum())
        start = float(self.arrival.min()) if n else 0.0
        end = float(self.finish[done].max()) if done.any() else start
        completed = int(done.sum())
        queried = int(self.queried_tokens.sum())
        return Metrics(
            attainment=float(met.mean()) if n else 0.0,
            attainment_by_class=by_class,
            slo_met=int(met.sum()),
            requests=n,
            mean_qoe=float(qoes.mean()) if len(qoes) else None,
            qoe_at_threshold=float((qoes >= qoe_threshold).mean()) if len(qoes) else None,
            ttft=Percentiles.of(self.ttft[done]),
            tbt=tbt,
            jct=Percentiles.of(self.jct[done]),
            throughput=tokens / (end - start) if end > start else 0.0,
            preemptions=int(self.preemptions.sum()),
            unfinished=n - completed - len(rejected),
            rejected=len(rejected),
            served_late=int((done & ~met).sum()),
            time_to_reject=Percentiles.of(rejected),
            prefix_hit_rate=int(self.cached_tokens.sum()) / queried if queried else 0.0,
        )


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
