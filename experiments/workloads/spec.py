"""What a workload is made of, as plain dataclasses (the [workload] section of a config).

Each dataclass checks its own values so that a wrong value is reported where it was written,
naming the field, before any request is generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from experiments.errors import ConfigError
from experiments.workloads.trace_loader import TIME_UNITS, Columns

DIST_KINDS = ("fixed", "choice", "uniform", "normal")
ARRIVAL_PROCESSES = ("trace", "poisson", "gamma", "bursts")
TTFT_RULES = ("andes", "fixed")
DAG_SHAPES = ("independent", "chain", "map_reduce", "tree_of_thought")
OVERSIZE_MODES = ("error", "clip")
WORKLOAD_KINDS = ("requests", "multi-turn")
CV_RANGE = (0.01, 100.0)  # Gamma shape 1/cv^2 from 1e4 to 1e-4: beyond, float draws degenerate


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class Dist:
    """A distribution of a positive SLO parameter (reading rate, slack ratio).

    fixed: `value`; choice: one of `values` with `probs` (uniform if omitted); uniform on
    [low, high]; normal(mean, std) clipped to [low, high] (clipping, not rejection, so the
    number of draws and hence the seed's stream never depends on the parameters).
    A bare number in a config means `fixed`.
    """

    kind: str = "fixed"
    value: float | None = None
    values: tuple[float, ...] = ()
    probs: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None

    def __post_init__(self) -> None:
        w = f"{self.kind} distribution"
        _check(self.kind in DIST_KINDS, f"distribution kind={self.kind!r}; valid: {', '.join(DIST_KINDS)}")
        if self.kind == "fixed":
            _check(self.value is not None and self.value > 0, f"{w}: fixed needs value > 0, got {self.value!r}")
        elif self.kind == "choice":
            _check(len(self.values) > 0 and all(v > 0 for v in self.values),
                   f"{w}: choice needs values > 0, got {list(self.values)}")
            if self.probs:
                _check(len(self.probs) == len(self.values) and all(p >= 0 for p in self.probs)
                       and math.isclose(sum(self.probs), 1.0, abs_tol=1e-9),
                       f"{w}: probs={list(self.probs)} must be {len(self.values)} non-negative numbers summing to 1")
        elif self.kind == "uniform":
            _check(self.low is not None and self.high is not None and 0 < self.low <= self.high,
                   f"{w}: uniform needs 0 < low <= high, got low={self.low!r} high={self.high!r}")
        else:
            _check(self.mean is not None and self.std is not None and self.std >= 0,
                   f"{w}: normal needs mean and std >= 0, got mean={self.mean!r} std={self.std!r}")
            _check(self.low is not None and self.low > 0 and (self.high is None or self.high >= self.low),
                   f"{w}: normal needs a clip bound low > 0 (and high >= low), got low={self.low!r} high={self.high!r}")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "fixed":
            return np.full(n, float(self.value))
        if self.kind == "choice":
            probs = np.asarray(self.probs) if self.probs else None
            return rng.choice(np.asarray(self.values, dtype=np.float64), size=n, p=probs)
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high, size=n)
        high = np.inf if self.high is None else self.high
        return np.clip(rng.normal(self.mean, self.std, size=n), self.low, high)


@dataclass(frozen=True)
class ClassMix:
    """Fractions of requests in each SLO class (exact counts, largest remainder)."""

    latency: float = 1.0
    throughput: float = 0.0
    bulk: float = 0.0

    def __post_init__(self) -> None:
        values = (self.latency, self.throughput, self.bulk)
        _check(all(v >= 0 for v in values) and math.isclose(sum(values), 1.0, abs_tol=1e-9),
               f"workload.mix: latency={self.latency}, throughput={self.throughput}, bulk={self.bulk} "
               "must be non-negative and sum to 1")


@dataclass(frozen=True)
class LatencySLO:
    """Streaming-chat SLO: TTFT target and reading rate.

    ttft_rule "andes": target = max(prompt_len / prefill_rate, ttft) (Andes: ~5,000 prompt
    tokens/s prefill, at least 1 s); "fixed": target = ttft for every request.
    Reading rates default to human reading (4.8 tok/s) or listening (3.3 tok/s), 80/20.
    """

    ttft_rule: str = "andes"
    ttft: float = 1.0
    prefill_rate: float = 5000.0
    read_rate: Dist = Dist(kind="choice", values=(4.8, 3.3), probs=(0.8, 0.2))

    def __post_init__(self) -> None:
        _check(self.ttft_rule in TTFT_RULES, f"workload.latency.ttft_rule={self.ttft_rule!r}; valid: {', '.join(TTFT_RULES)}")
        _check(self.ttft > 0, f"workload.latency.ttft={self.ttft!r} must be > 0")
        _check(self.prefill_rate > 0, f"workload.latency.prefill_rate={self.prefill_rate!r} must be > 0")

    def targets(self, prompt_len: np.ndarray) -> np.ndarray:
        if self.ttft_rule == "fixed":
            return np.full(len(prompt_len), float(self.ttft))
        return np.maximum(prompt_len / self.prefill_rate, self.ttft)


@dataclass(frozen=True)
class ThroughputSLO:
    """Completion deadline = arrival + slack x T_alone, slack drawn per request."""

    slack: Dist = Dist(kind="uniform", low=2.0, high=10.0)


@dataclass(frozen=True)
class BulkSLO:
    """How consecutive bulk-class requests are cut into groups and linked into DAGs.

    Group sizes are uniform on [size_min, size_max] (the last group takes what is left and may
    be smaller); each group's shape is drawn with the `shapes` weights; `branching` is the
    tree-of-thought fan-out; the group deadline is arrival + slack x T_alone(group).
    """

    size_min: int = 2
    size_max: int = 8
    shapes: dict[str, float] = field(default_factory=lambda: {s: 1.0 for s in DAG_SHAPES})
    branching: int = 2
    slack: Dist = Dist(kind="fixed", value=10.0)

    def __post_init__(self) -> None:
        _check(1 <= self.size_min <= self.size_max,
               f"workload.bulk: need 1 <= size_min <= size_max, got {self.size_min}, {self.size_max}")
        unknown = set(self.shapes) - set(DAG_SHAPES)
        _check(not unknown, f"workload.bulk.shapes: unknown shape(s) {sorted(unknown)}; valid: {', '.join(DAG_SHAPES)}")
        _check(all(w >= 0 for w in self.shapes.values()) and sum(self.shapes.values()) > 0,
               f"workload.bulk.shapes={self.shapes}: weights must be >= 0 with a positive sum")
        _check(self.branching >= 1, f"workload.bulk.branching={self.branching} must be >= 1")


@dataclass(frozen=True)
class MultiTurn:
    """Closed-loop conversations (workload kind "multi-turn"): each sampled ShareGPT conversation
    sends its turns one at a time, turn k+1 = the whole previous context (prompts and answers)
    plus its new message, released `think` seconds after turn k's last token.

    Conversations keep their first `max_turns` turns and need at least `min_turns` usable ones
    (others are counted in the instance's meta, never silently dropped). `think` is drawn per
    turn in seconds; the default, uniform on [2, 20] s, is an assumption (reading a short answer
    and typing a reply), not a measurement: no think times ship with ShareGPT.
    """

    min_turns: int = 2
    max_turns: int = 6
    think: Dist = Dist(kind="uniform", low=2.0, high=20.0)

    def __post_init__(self) -> None:
        _check(1 <= self.min_turns <= self.max_turns,
               f"workload.multi_turn: need 1 <= min_turns <= max_turns, got min_turns={self.min_turns}, "
               f"max_turns={self.max_turns}")


@dataclass(frozen=True)
class WorkloadConfig:
    """A workload: request lengths from a trace, arrivals from it or a synthetic process,
    classes by `mix`, SLO parameters per class.

    arrivals: "trace" keeps the trace's times; "poisson", "gamma" (inter-arrival CV `cv`) and
    "bursts" (Poisson during `burst_on` s out of every `burst_on + burst_off` s) draw new ones at
    `rate` req/s on average (kind "multi-turn": conversations/s, `limit` conversations) (default: the trace's mean rate over the rows used). `rate_scale`
    then divides every arrival time (2.0 = twice the load). `limit` keeps the first N requests.
    `oversize`: a request whose prompt+output can never fit the KV cache is an error, or with
    "clip" its prompt (then output) is shortened to fit and its id recorded in meta["clipped"].
    """

    trace: str = "azure-conv"
    columns: Columns | None = None
    time_unit: str | None = None
    limit: int | None = None
    rate_scale: float = 1.0
    arrivals: str = "trace"
    rate: float | None = None
    cv: float = 1.0
    burst_on: float = 10.0
    burst_off: float = 20.0
    mix: ClassMix = ClassMix()
    latency: LatencySLO = LatencySLO()
    throughput: ThroughputSLO = ThroughputSLO()
    bulk: BulkSLO = BulkSLO()
    oversize: str = "error"
    kind: str = "requests"
    multi_turn: MultiTurn = MultiTurn()

    def __post_init__(self) -> None:
        _check(self.kind in WORKLOAD_KINDS, f"workload.kind={self.kind!r}; valid: {', '.join(WORKLOAD_KINDS)}")
        _check(self.kind != "multi-turn" or self.mix.latency == 1.0,
               f"workload.mix: latency={self.mix.latency} but a multi-turn workload is latency only (a later "
               "turn's deadline would depend on the schedule): set latency = 1.0")
        _check(self.time_unit is None or self.time_unit in TIME_UNITS,
               f"workload.time_unit={self.time_unit!r}; valid: {', '.join(TIME_UNITS)}")
        _check(self.limit is None or self.limit >= 1, f"workload.limit={self.limit!r} must be >= 1")
        _check(self.rate_scale > 0, f"workload.rate_scale={self.rate_scale!r} must be > 0")
        _check(self.arrivals in ARRIVAL_PROCESSES,
               f"workload.arrivals={self.arrivals!r}; valid: {', '.join(ARRIVAL_PROCESSES)}")
        _check(self.rate is None or self.rate > 0, f"workload.rate={self.rate!r} must be > 0")
        _check(CV_RANGE[0] <= self.cv <= CV_RANGE[1],
               f"workload.cv = {self.cv!r}: must be in [{CV_RANGE[0]:g}, {CV_RANGE[1]:g}] (small: evenly spaced "
               "arrivals, 1: Poisson, large: bursts)")
        _check(self.burst_on > 0 and self.burst_off >= 0,
               f"workload: burst_on={self.burst_on!r} must be > 0 and burst_off={self.burst_off!r} >= 0")
        _check(self.oversize in OVERSIZE_MODES,
               f"workload.oversize={self.oversize!r}; valid: {', '.join(OVERSIZE_MODES)}")
