"""Per-request SLO parameters as they travel to a real engine in `SamplingParams.extra_args`.

A vLLM request only carries token ids and sampling settings; everything a policy needs about its
SLO (class, TTFT target, read rate, deadline, bulk group and DAG parents, predicted length)
travels under the key "slosched" of `extra_args` (`vllm_xargs` over HTTP). The runner writes it
with `slo_extra_args`; the scheduler reads it with `parse_slo_args`. No vLLM import here.

Over HTTP, vLLM accepts only flat `vllm_xargs` values (str, number, list), so a client sends the
entry as a JSON string: `vllm_xargs={"slosched": json.dumps({...})}`; both forms are read.

Times: `arrival`, `release` and `deadline` are absolute seconds on the scheduler's clock (the
runner knows that clock). An HTTP client cannot, so it may send `deadline_in` (seconds after
arrival) instead and leave `arrival` out (the scheduler stamps it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from formulations.instance import Instance
from formulations.requests import CLASS_CODES, RequestClass, ValidationError

KEY = "slosched"
_FIELDS = {"index", "id", "class", "arrival", "release", "ttft_target", "read_rate", "deadline",
           "deadline_in", "group", "parents", "pred", "levels"}
_GROUP_FIELDS = {"id", "members", "parents", "prompt_len", "deadline", "deadline_in"}


@dataclass(frozen=True)
class GroupSpec:
    """A bulk group's whole DAG, sent with each member so the first one to arrive registers it."""

    id: str
    members: tuple[int, ...]  # request indices
    parents: tuple[tuple[int, ...], ...]  # per member
    prompt_len: tuple[int, ...]  # per member
    deadline: float


@dataclass(frozen=True)
class SloArgs:
    """The parsed "slosched" entry of one request (index None: the scheduler assigns one)."""

    index: int | None
    id: str
    cls: int  # class code
    arrival: float
    release: float
    ttft_target: float
    read_rate: float
    deadline: float
    group: GroupSpec | None
    parents: tuple[int, ...]
    pred: np.ndarray | None  # predicted total output length per quantile level
    levels: tuple[float, ...] | None


def _number(owner: str, name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{owner}: {KEY}.{name}={value!r} must be a finite number")
    if positive and value <= 0:
        raise ValidationError(f"{owner}: {KEY}.{name}={value!r} must be > 0")
    return float(value)


def _indices(owner: str, name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
        raise ValidationError(f"{owner}: {KEY}.{name}={value!r} must be a list of request indices (ints >= 0)")
    return tuple(value)


def _deadline(owner: str, d: Mapping[str, Any], arrival: float, prefix: str = "") -> float | None:
    if "deadline" in d and "deadline_in" in d:
        raise ValidationError(f"{owner}: give {KEY}.{prefix}deadline or {KEY}.{prefix}deadline_in, not both")
    if "deadline" in d:
        return _number(owner, prefix + "deadline", d["deadline"])
    if "deadline_in" in d:
        return arrival + _number(owner, prefix + "deadline_in", d["deadline_in"], positive=True)
    return None


def parse_slo_args(extra_args: Mapping[str, Any] | None, request_id: str, now: float) -> SloArgs:
    """Read and validate the "slosched" entry of a request's extra_args.

    A request without one is *unmanaged*: a throughput request with no deadline (so a plain
    client still works against the scheduler); everything else is checked and a bad value raises
    ValidationError naming the request and the field.
    """
    owner = f"request {request_id!r}"
    raw = (extra_args or {}).get(KEY)
    if raw is None:
        return SloArgs(None, request_id, CLASS_CODES[RequestClass.THROUGHPUT], now, now, math.nan, math.nan,
                       math.inf, None, (), None, None)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ValidationError(f"{owner}: extra_args[{KEY!r}] is a string but not JSON ({err})") from None
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{owner}: extra_args[{KEY!r}] must be a mapping or its JSON, got {type(raw).__name__}")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ValidationError(f"{owner}: unknown {KEY} field(s) {sorted(unknown)}; valid: {sorted(_FIELDS)}")
    try:
        cls = RequestClass(raw.get("class"))
    except ValueError:
        raise ValidationError(
            f"{owner}: {KEY}.class={raw.get('class')!r}; valid: {', '.join(c.value for c in RequestClass)}"
        ) from None
    index = raw.get("index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise ValidationError(f"{owner}: {KEY}.index={index!r} must be an int >= 0")
    arrival = _number(owner, "arrival", raw["arrival"]) if "arrival" in raw else now
    release = _number(owner, "release", raw["release"]) if "release" in raw else max(arrival, now) if raw.get("parents") else arrival
    ttft = rate = math.nan
    deadline = math.nan
    group = None
    if cls is RequestClass.LATENCY:
        ttft = _number(owner, "ttft_target", raw.get("ttft_target"), positive=True)
        rate = _number(owner, "read_rate", raw.get("read_rate"), positive=True)
    elif cls is RequestClass.THROUGHPUT:
        found = _deadline(owner, raw, arrival)
        if found is None:
            raise ValidationError(f"{owner}: class=throughput needs {KEY}.deadline or {KEY}.deadline_in")
        deadline = found
    else:
        group = _group(owner, raw.get("group"), arrival)
        deadline = group.deadline
    if cls is not RequestClass.BULK and "group" in raw:
        raise ValidationError(f"{owner}: {KEY}.group given but class={cls.value} (only bulk requests have groups)")
    pred = levels = None
    if "pred" in raw or "levels" in raw:
        pred, levels = _quantiles(owner, raw)
    return SloArgs(index, str(raw.get("id", request_id)), CLASS_CODES[cls], arrival, release, ttft, rate, deadline,
                   group, _indices(owner, "parents", raw.get("parents", [])), pred, levels)


def _numbers(owner: str, name: str, value: Any) -> list[float]:
    if not isinstance(value, list | tuple) or not value:
        raise ValidationError(f"{owner}: {KEY}.{name}={value!r} must be a non-empty list of numbers")
    return [_number(owner, name, v) for v in value]


def _quantiles(owner: str, raw: Mapping[str, Any]) -> tuple[np.ndarray, tuple[float, ...]]:
    """A client's predicted output length: `pred[k]` tokens at quantile `levels[k]`, the levels
    strictly increasing in (0, 1) and the lengths >= 1 and non-decreasing (a quantile function),
    so the scheduler can read them at its predictor's levels (SloScheduler.add_request)."""
    if "pred" not in raw or "levels" not in raw:
        raise ValidationError(f"{owner}: {KEY}.pred and {KEY}.levels go together")
    levels = _numbers(owner, "levels", raw["levels"])
    pred = _numbers(owner, "pred", raw["pred"])
    if any(not 0 < q < 1 for q in levels) or any(b <= a for a, b in zip(levels, levels[1:])):
        raise ValidationError(f"{owner}: {KEY}.levels={raw['levels']!r} must be strictly increasing, each in (0, 1)")
    if len(pred) != len(levels) or min(pred) < 1 or any(b < a for a, b in zip(pred, pred[1:])):
        raise ValidationError(f"{owner}: {KEY}.pred={raw['pred']!r} must be {len(levels)} non-decreasing numbers >= 1 "
                              "(one per level)")
    return np.array(pred), tuple(levels)


def _group(owner: str, raw: Any, arrival: float) -> GroupSpec:
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{owner}: class=bulk needs {KEY}.group = {{id, members, parents, prompt_len, deadline}}")
    unknown = set(raw) - _GROUP_FIELDS
    if unknown:
        raise ValidationError(f"{owner}: unknown {KEY}.group field(s) {sorted(unknown)}; valid: {sorted(_GROUP_FIELDS)}")
    members = _indices(owner, "group.members", raw.get("members"))
    parents = raw.get("parents", [[] for _ in members])
    prompt_len = raw.get("prompt_len")
    if not isinstance(parents, list | tuple) or len(parents) != len(members):
        raise ValidationError(f"{owner}: {KEY}.group.parents must have one list per member ({len(members)})")
    if not isinstance(prompt_len, list | tuple) or len(prompt_len) != len(members):
        raise ValidationError(f"{owner}: {KEY}.group.prompt_len must have one int per member ({len(members)})")
    deadline = _deadline(owner, raw, arrival, "group.")
    if deadline is None:
        raise ValidationError(f"{owner}: {KEY}.group needs deadline or deadline_in")
    return GroupSpec(str(raw.get("id")), members, tuple(_indices(owner, "group.parents", p) for p in parents),
                     tuple(int(p) for p in prompt_len), deadline)


def slo_extra_args(instance: Instance, i: int, *, arrival: float, release: float,
                   pred: Sequence[float] | None = None, levels: Sequence[float] | None = None) -> dict[str, Any]:
    """The extra_args of request i of `instance` (times already on the scheduler's clock)."""
    req = instance.requests[i]
    table = instance.table
    d: dict[str, Any] = {"index": i, "id": req.id, "class": req.cls.value, "arrival": arrival, "release": release}
    if req.cls is RequestClass.LATENCY:
        d["ttft_target"] = req.ttft_target
        d["read_rate"] = req.read_rate
    elif req.cls is RequestClass.THROUGHPUT:
        d["deadline"] = float(table.deadline[i])
    else:
        g = int(table.group[i])
        members = table.group_members[g]
        d["group"] = {"id": req.group, "members": [int(m) for m in members],
                      "parents": [[int(p) for p in table.parents[m]] for m in members],
                      "prompt_len": [int(table.prompt_len[m]) for m in members],
                      "deadline": float(table.deadline[i])}
        d["parents"] = [int(p) for p in table.parents[i]]
    if pred is not None:
        d["pred"] = [float(x) for x in pred]
        d["levels"] = [float(x) for x in levels]
    return {KEY: d}
