"""What happened to each request: the common output of the simulator, vLLM runs and solvers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RequestTimeline:
    """One request's history. Times are absolute seconds on the run's clock.

    `release` is when the request could first run (its arrival, or for a DAG child the finish of
    its last parent). `admissions` are the times it (re)started holding KV; `preemptions` the
    times it lost them. `token_times[i]` is when output token i+1 was delivered. `rejected` is
    when the policy rejected it (Plan.reject: finished unserved, the client told at once).
    `cached_tokens` / `queried_tokens`: its prefix-cache hits and lookups (0 without caching).
    """

    request_id: str
    release: float
    token_times: np.ndarray = field(default_factory=lambda: np.empty(0))
    admissions: list[float] = field(default_factory=list)
    preemptions: list[float] = field(default_factory=list)
    finish: float | None = None
    rejected: float | None = None
    cached_tokens: int = 0  # prefix-cache hit tokens over its admissions
    queried_tokens: int = 0  # tokens it looked up in the prefix cache over its admissions

    @property
    def first_token(self) -> float | None:
        return float(self.token_times[0]) if len(self.token_times) else None


@dataclass
class Schedule:
    """Per-request timelines (in the order of `Instance.requests`) plus run statistics."""

    timelines: list[RequestTimeline]
    iterations: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def by_id(self) -> dict[str, RequestTimeline]:
        return {t.request_id: t for t in self.timelines}
