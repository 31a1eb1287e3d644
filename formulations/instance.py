"""An `Instance`: an engine plus requests and bulk groups, validated, JSON round-trippable.

`RequestTable` is the same requests as numpy columns indexed 0..n-1 (the order of
`Instance.requests`); engines and policies use those integer indices in their hot loops.
`Instance.requests` is a tuple of `Request` or, for a generated workload, `RequestColumns`
(formulations/request_columns.py: the same sequence without a million objects in memory); code
that runs on a whole workload reads `table` and the requests it needs one by one, never `by_id`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from formulations.deadlines import group_deadline, request_deadline
from formulations.engine_spec import EngineSpec
from formulations.request_columns import RequestColumns
from formulations.requests import CLASS_CODES, Group, Request, RequestClass, ValidationError
from formulations.arithmetic import ceil_div

NAN = float("nan")


@dataclass(frozen=True)
class RequestTable:
    """Columnar copy of an instance's requests (index i = Instance.requests[i])."""

    ids: list[str]
    cls: np.ndarray  # int8 class code
    arrival: np.ndarray
    prompt_len: np.ndarray  # int64
    output_len: np.ndarray  # int64, true lengths: engines and scorers only
    ttft_target: np.ndarray  # nan unless latency
    read_rate: np.ndarray  # nan unless latency
    deadline: np.ndarray  # throughput: own deadline; bulk: group deadline; nan for latency
    group: np.ndarray  # int64 group index, -1 if none
    parents: list[np.ndarray]  # indices of DAG parents (empty for most requests)
    group_members: list[np.ndarray]  # per group index: member request indices
    after: np.ndarray  # int64 index of a turn's previous turn, -1 if none (formulations/turns.py)
    think_time: np.ndarray  # s from the previous turn's finish to a turn's release; 0 if none

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Instance:
    engine: EngineSpec
    requests: Sequence[Request]  # a tuple, or RequestColumns
    groups: tuple[Group, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)

    @cached_property
    def by_id(self) -> dict[str, Request]:
        """Every request by id (all of them as objects: for small instances, e.g. the exact solvers)."""
        return {r.id: r for r in self.requests}

    @cached_property
    def index(self) -> Mapping[str, int]:
        """Request id -> position in `requests`."""
        if isinstance(self.requests, RequestColumns):
            return self.requests.positions()
        return {r.id: i for i, r in enumerate(self.requests)}

    @cached_property
    def group_by_id(self) -> dict[str, Group]:
        return {g.id: g for g in self.groups}

    @cached_property
    def group_deadlines(self) -> dict[str, float]:
        return {g.id: group_deadline(self.engine, g, self.members_of(g)) for g in self.groups}

    def members_of(self, group: Group) -> dict[str, Request]:
        """A group's member requests by id."""
        return {m: self.requests[self.index[m]] for m in group.members}

    def deadline(self, req: Request) -> float | None:
        """A throughput request's deadline, a bulk member's group deadline, None for latency."""
        if req.cls is RequestClass.THROUGHPUT:
            return request_deadline(self.engine, req)
        if req.cls is RequestClass.BULK:
            return self.group_deadlines[req.group]
        return None

    @cached_property
    def table(self) -> RequestTable:
        n = len(self.requests)
        parents: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * n
        for g in self.groups:
            if not g.edges:
                continue
            dag = g.dag
            for member in g.members:
                preds = list(dag.predecessors(member))
                if preds:
                    parents[self.index[member]] = np.array([self.index[p] for p in preds], dtype=np.int64)
        columns = self._columns() if isinstance(self.requests, RequestColumns) else self._columns_of_objects()
        deadlines = np.full(n, NAN)  # latency requests have none: only the others are read
        for k in np.flatnonzero(columns["cls"] != CLASS_CODES[RequestClass.LATENCY]).tolist():
            deadlines[k] = self.deadline(self.requests[k])
        return RequestTable(
            ids=self.requests.ids if isinstance(self.requests, RequestColumns) else [r.id for r in self.requests],
            **columns, deadline=deadlines, parents=parents,
            group_members=[np.array([self.index[m] for m in g.members], dtype=np.int64) for g in self.groups],
        )

    def _columns(self) -> dict[str, np.ndarray]:
        """The table's per-request columns from RequestColumns (no turns there)."""
        reqs = self.requests
        assert isinstance(reqs, RequestColumns)
        group_index = {g.id: k for k, g in enumerate(self.groups)}
        # position[k]: the instance's index of reqs.group_ids[k]; the trailing -1 maps "no group" to -1
        position = np.array([group_index[gid] for gid in reqs.group_ids] + [-1], dtype=np.int64)
        return dict(cls=reqs.cls, arrival=reqs.arrival, prompt_len=reqs.prompt_len, output_len=reqs.output_len,
                    ttft_target=reqs.ttft_target, read_rate=reqs.read_rate, group=position[reqs.group],
                    after=np.full(len(reqs), -1, dtype=np.int64), think_time=np.zeros(len(reqs)))

    def _columns_of_objects(self) -> dict[str, np.ndarray]:
        """The table's per-request columns from Request objects."""
        reqs = self.requests
        group_index = {g.id: k for k, g in enumerate(self.groups)}
        return dict(
            cls=np.array([CLASS_CODES[r.cls] for r in reqs], dtype=np.int8),
            arrival=np.array([r.arrival for r in reqs], dtype=np.float64),
            prompt_len=np.array([r.prompt_len for r in reqs], dtype=np.int64),
            output_len=np.array([r.output_len for r in reqs], dtype=np.int64),
            ttft_target=np.array([NAN if r.ttft_target is None else r.ttft_target for r in reqs], dtype=np.float64),
            read_rate=np.array([NAN if r.read_rate is None else r.read_rate for r in reqs], dtype=np.float64),
            group=np.array([group_index[r.group] if r.group is not None else -1 for r in reqs], dtype=np.int64),
            after=np.array([-1 if r.after is None else self.index[r.after] for r in reqs], dtype=np.int64),
            think_time=np.array([r.think_time or 0.0 for r in reqs], dtype=np.float64),
        )

    # ---- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def req_dict(r: Request) -> dict[str, Any]:
            d = asdict(r)
            d["class"] = d.pop("cls").value
            if r.content_ids is not None:
                d["content_ids"] = list(r.content_ids)
            return {k: v for k, v in d.items() if v is not None}

        return {
            "engine": self.engine.to_dict(),
            "requests": [req_dict(r) for r in self.requests],
            "groups": [
                {"id": g.id, "members": list(g.members), "arrival": g.arrival, "slack_ratio": g.slack_ratio,
                 "edges": [list(e) for e in g.edges]}
                for g in self.groups
            ],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Instance:
        if not isinstance(data, dict):
            raise ValidationError(f"instance: expected a JSON object, got {type(data).__name__}")
        for key in ("engine", "requests"):
            if key not in data:
                raise ValidationError(f"instance: missing field {key!r}")
        requests = tuple(_request_from_dict(d, k) for k, d in enumerate(_objects(data["requests"], "requests")))
        groups = tuple(_group_from_dict(d, k) for k, d in enumerate(_objects(data.get("groups", []), "groups")))
        if not isinstance(data["engine"], dict | str):
            raise ValidationError(f"instance: engine = {data['engine']!r}: expected an object or a profile name")
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise ValidationError(f"instance: meta = {meta!r}: expected an object")
        return cls(EngineSpec.from_dict(data["engine"]), requests, groups, dict(meta))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_json(cls, path: str | Path) -> Instance:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValidationError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data)


def sub_instance(instance: Instance, keep: Collection[int]) -> Instance:
    """The instance restricted to the requests at the indices `keep` (in their order in
    `instance.requests`) and the groups they belong to: same engine, no meta. `keep` must hold
    whole groups and every earlier turn a kept turn follows, else validation rejects it."""
    kept = set(keep)
    requests = tuple(r for i, r in enumerate(instance.requests) if i in kept)
    groups = tuple(g for g in instance.groups if any(r.group == g.id for r in requests))
    return Instance(instance.engine, requests, groups)


def _objects(value: Any, field: str) -> list[dict[str, Any]]:
    """`value` if it is a list of JSON objects, else an error naming the field and what it holds."""
    if not isinstance(value, list):
        raise ValidationError(f"instance: {field} = {str(value)[:40]!r}: expected a list of objects")
    for k, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValidationError(f"instance: {field}[{k}] = {str(item)[:40]!r}: expected an object")
    return value


_REQUEST_FIELDS = {"id", "class", "arrival", "prompt_len", "output_len", "ttft_target", "read_rate",
                   "slack_ratio", "group", "prompt_text", "content_ids", "content_block", "after", "think_time"}


def _request_from_dict(d: dict[str, Any], position: int) -> Request:
    rid = d.get("id", f"#{position}")
    unknown = set(d) - _REQUEST_FIELDS
    if unknown:
        raise ValidationError(f"request {rid!r}: unknown field(s) {sorted(unknown)}; valid: {sorted(_REQUEST_FIELDS)}")
    for key in ("id", "class", "arrival", "prompt_len", "output_len"):
        if key not in d:
            raise ValidationError(f"request {rid!r}: missing field {key!r}")
    try:
        cls = RequestClass(d["class"])
    except ValueError:
        raise ValidationError(
            f"request {rid!r}: class={d['class']!r}; valid: {', '.join(c.value for c in RequestClass)}"
        ) from None
    return Request(id=str(d["id"]), cls=cls, arrival=d["arrival"], prompt_len=d["prompt_len"],
                   output_len=d["output_len"], ttft_target=d.get("ttft_target"), read_rate=d.get("read_rate"),
                   slack_ratio=d.get("slack_ratio"), group=d.get("group"), prompt_text=d.get("prompt_text"),
                   content_ids=None if d.get("content_ids") is None else tuple(d["content_ids"]),
                   content_block=d.get("content_block"), after=d.get("after"), think_time=d.get("think_time"))


def _group_from_dict(d: dict[str, Any], position: int) -> Group:
    gid = d.get("id", f"#{position}")
    for key in ("id", "members", "arrival", "slack_ratio"):
        if key not in d:
            raise ValidationError(f"group {gid!r}: missing field {key!r}")
    edges = d.get("edges", [])
    if any(not isinstance(e, list | tuple) or len(e) != 2 for e in edges):
        raise ValidationError(f"group {gid!r}: edges must be [parent, child] pairs, got {edges!r}")
    return Group(id=str(gid), members=tuple(str(m) for m in d["members"]), arrival=d["arrival"],
                 slack_ratio=d["slack_ratio"], edges=tuple((str(a), str(b)) for a, b in edges))


# ---- validation ------------------------------------------------------------------------------
def _positive_number(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValidationError(f"{owner}: {name}={value!r} must be a positive finite number")


def _validate_request(inst: Instance, r: Request) -> None:
    owner = f"request {r.id!r}"
    if not isinstance(r.cls, RequestClass):
        raise ValidationError(f"{owner}: class={r.cls!r}; valid: {', '.join(c.value for c in RequestClass)}")
    if isinstance(r.arrival, bool) or not isinstance(r.arrival, int | float) or not math.isfinite(r.arrival) or r.arrival < 0:
        raise ValidationError(f"{owner}: arrival={r.arrival!r} must be a finite number >= 0")
    for name in ("prompt_len", "output_len"):
        value = getattr(r, name)
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValidationError(f"{owner}: {name}={value!r} must be an integer >= 1")
    peak_blocks = inst.engine.blocks_for(r.prompt_len + r.output_len - 1)
    if peak_blocks > inst.engine.kv_blocks:
        raise ValidationError(
            f"{owner}: prompt_len+output_len={r.prompt_len + r.output_len} needs {peak_blocks} KV blocks "
            f"but the engine has only {inst.engine.kv_blocks}: it can never fit (raise engine.kv_blocks "
            "or shorten the request)"
        )
    _validate_content(owner, r)
    _validate_turn(inst, owner, r)
    if r.cls is RequestClass.LATENCY:
        _positive_number(owner, "ttft_target", r.ttft_target)
        _positive_number(owner, "read_rate", r.read_rate)
    if r.cls is RequestClass.THROUGHPUT:
        _positive_number(owner, "slack_ratio", r.slack_ratio)
    if r.cls is RequestClass.BULK:
        if r.group is None:
            raise ValidationError(f"{owner}: class=bulk needs a group")
        if r.group not in inst.group_by_id:
            raise ValidationError(f"{owner}: group={r.group!r} does not exist")
        if r.id not in inst.group_by_id[r.group].members:
            raise ValidationError(f"{owner}: group={r.group!r} does not list it as a member")
    elif r.group is not None:
        raise ValidationError(f"{owner}: group={r.group!r} but class={r.cls.value} (only bulk requests have groups)")


def _validate_content(owner: str, r: Request) -> None:
    if (r.content_ids is None) != (r.content_block is None):
        raise ValidationError(f"{owner}: content_ids and content_block go together (got content_ids="
                              f"{'set' if r.content_ids is not None else None}, content_block={r.content_block!r})")
    if r.content_ids is None:
        return
    block = r.content_block
    if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 1:
        raise ValidationError(f"{owner}: content_block={block!r} must be an integer >= 1")
    if not isinstance(r.content_ids, tuple) or any(
            isinstance(i, bool) or not isinstance(i, int | np.integer) for i in r.content_ids):
        raise ValidationError(f"{owner}: content_ids must be a tuple of integers, got {r.content_ids!r:.80}")
    most = ceil_div((r.prompt_len + r.output_len), block)
    if len(r.content_ids) > most:
        raise ValidationError(f"{owner}: content_ids has {len(r.content_ids)} ids but prompt_len+output_len="
                              f"{r.prompt_len + r.output_len} tokens make at most {most} blocks of {block}")


def _validate_turn(inst: Instance, owner: str, r: Request) -> None:
    """A later turn names an earlier request (so turns form chains), shares its arrival (the
    conversation's start), has a think time >= 0 and is latency class."""
    if r.after is None:
        if r.think_time is not None:
            raise ValidationError(f"{owner}: think_time={r.think_time!r} without after (only a later turn has one)")
        return
    if r.after not in inst.index or inst.index[r.after] >= inst.index[r.id]:
        raise ValidationError(f"{owner}: after={r.after!r} must name an earlier request of the instance")
    previous = inst.requests[inst.index[r.after]]
    think = r.think_time
    if isinstance(think, bool) or not isinstance(think, int | float) or not math.isfinite(think) or think < 0:
        raise ValidationError(f"{owner}: think_time={think!r} must be a finite number >= 0 (seconds)")
    if r.cls is not RequestClass.LATENCY:
        raise ValidationError(f"{owner}: class={r.cls.value} with after={r.after!r}; a later turn must be latency "
                              "class (a deadline would depend on the schedule)")
    if r.arrival != previous.arrival:
        raise ValidationError(f"{owner}: arrival={r.arrival} differs from its previous turn's {previous.arrival} "
                              "(a turn carries its conversation's start; it is released by think_time)")


def _validate_group(inst: Instance, g: Group) -> None:
    owner = f"group {g.id!r}"
    _positive_number(owner, "slack_ratio", g.slack_ratio)
    if isinstance(g.arrival, bool) or not isinstance(g.arrival, int | float) or not math.isfinite(g.arrival) or g.arrival < 0:
        raise ValidationError(f"{owner}: arrival={g.arrival!r} must be a finite number >= 0")
    if not g.members:
        raise ValidationError(f"{owner}: members is empty")
    if len(set(g.members)) != len(g.members):
        raise ValidationError(f"{owner}: members has duplicates")
    for m in g.members:
        if m not in inst.index:
            raise ValidationError(f"{owner}: member {m!r} is not a request of the instance")
        req = inst.requests[inst.index[m]]
        if req.group != g.id:
            raise ValidationError(f"{owner}: member {m!r} has group={req.group!r}")
        if req.arrival != g.arrival:
            raise ValidationError(f"{owner}: member {m!r} arrival={req.arrival} differs from the group's {g.arrival}")
    members = set(g.members)
    for parent, child in g.edges:
        for end in (parent, child):
            if end not in members:
                raise ValidationError(f"{owner}: dependency {parent!r}->{child!r} names {end!r}, not a member (dangling)")
    dag = g.dag
    if not nx.is_directed_acyclic_graph(dag):
        cycle = nx.find_cycle(dag)
        raise ValidationError(f"{owner}: dependencies have a cycle {[e[0] for e in cycle]}")


def validate(inst: Instance) -> None:
    """Reject every malformed field with an error naming the request/group and the field."""
    if not isinstance(inst.engine, EngineSpec):
        raise ValidationError(f"instance: engine must be an EngineSpec, got {type(inst.engine).__name__}")
    if len(inst.index) < len(inst.requests):
        seen: set[str] = set()
        for r in inst.requests:
            if r.id in seen:
                raise ValidationError(f"request {r.id!r}: id is duplicated")
            seen.add(r.id)
    gseen: set[str] = set()
    for g in inst.groups:
        if g.id in gseen:
            raise ValidationError(f"group {g.id!r}: id is duplicated")
        gseen.add(g.id)
    for r in inst.requests:
        _validate_request(inst, r)
    for g in inst.groups:
        _validate_group(inst, g)
