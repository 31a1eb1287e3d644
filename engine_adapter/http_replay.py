"""Replay a workload against any OpenAI-compatible server and record what each request got.

The client side of `slosched bench`: every request of an `Instance` is sent to `/completions`
with streaming at its arrival (scale the instance first: engine_adapter.realized.realize) or, for a DAG child, once all its parents
have finished; every streamed chunk is stamped on arrival, so the result is a `Schedule` that
`formulations.metrics.score` scores exactly like a simulator run. The clock reads 0 when the
replay starts (`time.perf_counter` based, so a server on the same host can be compared).

Open loop with a cap: at most `concurrency` streams are open at once; a request whose arrival
comes while the cap is reached waits client-side, and that wait counts against its SLO (its
arrival is when it was due, not when it was sent).

Token counts come from the server's cumulative `usage.completion_tokens` per chunk
(`stream_options.continuous_usage_stats`, vLLM and others), else from the chunk's `token_ids`,
else one per non-empty text chunk; a token is stamped when the chunk that reports it arrives.

When the server runs slosched's scheduler (`send_slo`), each request carries its SLO in
`vllm_xargs` (engine_adapter/slo_args.py): times relative to its sending (`deadline_in`),
indices shifted by `index_base` so several runs can share one server.

Interrupting (Ctrl-C cancels the replay task) keeps every record: requests still streaming are
`cancelled` with the tokens they got, unsent ones `not sent`; nothing is dropped.
No vLLM import here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from engine_adapter.slo_args import KEY, slo_extra_args
from formulations.instance import Instance
from formulations.schedule import RequestTimeline, Schedule
from formulations.turns import require_open_loop

PROMPT_KINDS = ("tokens", "text")
FINISHED, CANCELLED, NOT_SENT, PARENT_FAILED = "finished", "cancelled", "not sent", "parent failed"


@dataclass(frozen=True)
class ReplaySettings:
    url: str  # the API root, e.g. http://127.0.0.1:8000/v1
    model: str
    concurrency: int = 64  # streams open at once
    prompt: str = "tokens"  # token-id prompts (server started with --skip-tokenizer-init) or text
    vocab_size: int = 1000  # token ids are drawn from [10, vocab_size)
    send_slo: bool = True  # vllm_xargs for slosched's scheduler
    index_base: int = 0
    request_timeout: float = 600.0  # s without a byte from the server before a request fails
    seed: int = 0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency={self.concurrency} must be >= 1")
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"prompt={self.prompt!r}; valid: {', '.join(PROMPT_KINDS)}")
        if self.vocab_size <= 10:
            raise ValueError(f"vocab_size={self.vocab_size} must be > 10")


@dataclass
class RequestRecord:
    """What the client saw of one request (times on the replay clock)."""

    id: str
    status: str = NOT_SENT  # finished, cancelled, not sent, parent failed, or "error: ..."
    release: float | None = None  # when it was due (arrival, or its last parent's finish)
    sent: float | None = None
    token_times: list[float] = field(default_factory=list)
    finish: float | None = None
    finish_reason: str | None = None


@dataclass
class ReplayResult:
    records: list[RequestRecord]  # in instance order
    schedule: Schedule
    wall_seconds: float
    interrupted: bool
    clock_origin: float  # time.perf_counter() when the replay clock read 0


def prompt_for(settings: ReplaySettings, index: int, length: int) -> list[int] | str:
    """A deterministic prompt of `length` tokens (token ids) or about that many words (text)."""
    rng = np.random.default_rng([settings.seed, index])
    if settings.prompt == "tokens":
        return rng.integers(10, settings.vocab_size, size=length).tolist()
    words = ("the", "cache", "token", "model", "serve", "batch", "queue", "read")
    return " ".join(words[k] for k in rng.integers(0, len(words), size=length))


def relative_slo(instance: Instance, i: int, now: float, index_base: int) -> dict[str, Any]:
    """Request i's SLO for vllm_xargs: deadlines relative to now (its sending), indices shifted."""
    slo = slo_extra_args(instance, i, arrival=now, release=now)[KEY]
    for key in ("arrival", "release"):  # the scheduler stamps them on its own clock
        slo.pop(key)
    slo["index"] += index_base
    if "deadline" in slo:
        slo["deadline_in"] = max(slo.pop("deadline") - now, 1e-3)  # a passed deadline: due at once
    if "group" in slo:
        group = slo["group"]
        group["deadline_in"] = max(group.pop("deadline") - now, 1e-3)
        group["members"] = [m + index_base for m in group["members"]]
        group["parents"] = [[p + index_base for p in ps] for ps in group["parents"]]
        group["id"] = f"{group['id']}@{index_base}" if index_base else group["id"]
        slo["parents"] = [p + index_base for p in slo["parents"]]
    return {KEY: json.dumps(slo)}


def request_body(instance: Instance, i: int, settings: ReplaySettings, now: float) -> dict[str, Any]:
    req = instance.requests[i]
    body: dict[str, Any] = {
        "model": settings.model, "prompt": prompt_for(settings, i, req.prompt_len), "max_tokens": req.output_len,
        "ignore_eos": True, "temperature": 0.0, "stream": True, "return_token_ids": settings.prompt == "tokens",
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    if settings.send_slo:
        body["vllm_xargs"] = relative_slo(instance, i, now, settings.index_base)
    return body


class _Counter:
    """Tokens of one stream from its chunks (see the module docstring for the order of sources)."""

    def __init__(self) -> None:
        self.seen = 0

    def new_tokens(self, chunk: dict[str, Any]) -> int:
        usage = chunk.get("usage") or {}
        if usage.get("completion_tokens") is not None:
            new = int(usage["completion_tokens"]) - self.seen
        else:
            choices = chunk.get("choices") or [{}]
            ids = choices[0].get("token_ids")
            new = len(ids) if ids is not None else int(bool(choices[0].get("text")))
        self.seen += max(new, 0)
        return max(new, 0)


class Replay:
    """One replay of `instance` (use `run()` once)."""

    def __init__(self, instance: Instance, settings: ReplaySettings,
                 on_tokens: Callable[[int], None] | None = None, on_done: Callable[[RequestRecord], None] | None = None):
        self.instance, self.settings = instance, settings
        self.on_tokens, self.on_done = on_tokens, on_done
        require_open_loop(instance.requests, "slosched bench", "cannot replay it: a later turn's prompt must repeat "
                                                              "the answer the server gave, which this client does not build")
        table = instance.table
        self.parents = [list(map(int, table.parents[i])) for i in range(len(instance.requests))]
        self.children: list[list[int]] = [[] for _ in instance.requests]
        for child, parents in enumerate(self.parents):
            for p in parents:
                self.children[p].append(child)
        self.parents_left = [len(p) for p in self.parents]
        self.records = [RequestRecord(r.id) for r in instance.requests]
        self.tasks: set[asyncio.Task] = set()

    def clock(self) -> float:
        return time.perf_counter() - self.origin

    async def run(self) -> ReplayResult:
        self.origin = time.perf_counter()
        interrupted = False
        limits = httpx.Limits(max_connections=self.settings.concurrency, max_keepalive_connections=self.settings.concurrency)
        timeout = httpx.Timeout(self.settings.request_timeout, connect=10.0)
        self.gate = asyncio.Semaphore(self.settings.concurrency)
        async with httpx.AsyncClient(base_url=self.settings.url.rstrip("/") + "/", limits=limits, timeout=timeout) as client:
            self.client = client
            for i, parents in enumerate(self.parents):
                if not parents:
                    self._start(i, self.instance.requests[i].arrival)
            try:
                while self.tasks:
                    await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # Ctrl-C: stop every request, keep what they got
                interrupted = True
                for task in self.tasks:
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)
        wall = self.clock()
        return ReplayResult(self.records, self._schedule(), wall, interrupted, self.origin)

    def _start(self, i: int, release: float) -> None:
        self.records[i].release = release
        task = asyncio.create_task(self._request(i, release))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _request(self, i: int, release: float) -> None:
        record = self.records[i]
        try:
            await asyncio.sleep(max(0.0, release - self.clock()))
            async with self.gate:
                record.sent = self.clock()
                await self._stream(i, record)
        except asyncio.CancelledError:
            record.status = CANCELLED if record.sent is not None else NOT_SENT
            raise
        except Exception as err:  # a connection or protocol failure fails this request only
            record.status = f"error: {type(err).__name__}: {err}"[:300]
        if self.on_done:
            self.on_done(record)
        self._release_children(i)

    async def _stream(self, i: int, record: RequestRecord) -> None:
        body = request_body(self.instance, i, self.settings, record.sent)
        counter = _Counter()
        async with self.client.stream("POST", "completions", json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                record.status = f"error: HTTP {response.status_code}: {text}"[:300]
                return
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                stamp = self.clock()
                chunk = json.loads(data)
                new = counter.new_tokens(chunk)
                record.token_times.extend([stamp] * new)
                if new and self.on_tokens:
                    self.on_tokens(new)
                reason = next((c.get("finish_reason") for c in chunk.get("choices") or [] if c.get("finish_reason")), None)
                if reason:
                    record.finish_reason = reason
        if record.finish_reason is None:
            record.status = "error: the stream ended without a finish_reason"
            return
        record.status = FINISHED
        record.finish = record.token_times[-1] if record.token_times else self.clock()

    def _release_children(self, i: int) -> None:
        for child in self.children[i]:
            self.parents_left[child] -= 1
            if self.parents_left[child]:
                continue
            parents = [self.records[p] for p in self.parents[child]]
            if any(p.status != FINISHED for p in parents):
                self.records[child].status = PARENT_FAILED
                self._release_children(child)
                continue
            due = max(self.instance.requests[child].arrival, max(p.finish for p in parents))
            self._start(child, due)

    def _schedule(self) -> Schedule:
        timelines = []
        for req, record in zip(self.instance.requests, self.records, strict=True):
            release = record.release if record.release is not None else req.arrival
            timelines.append(RequestTimeline(req.id, release, np.asarray(record.token_times, dtype=np.float64),
                                             finish=record.finish if record.status == FINISHED else None))
        return Schedule(timelines, meta={"engine": "http", "url": self.settings.url, "model": self.settings.model})


def replay(instance: Instance, settings: ReplaySettings, **callbacks) -> ReplayResult:
    """Run the replay in a fresh event loop; Ctrl-C returns the partial result (`interrupted`)."""
    return asyncio.run(Replay(instance, settings, **callbacks).run())
