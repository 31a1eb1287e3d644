"""Requests, their SLO classes, and bulk groups with dependency DAGs."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import networkx as nx


class RequestClass(str, Enum):
    """The three SLO classes of docs/DESIGN.md; the integer codes are used in numpy columns."""

    LATENCY = "latency"
    THROUGHPUT = "throughput"
    BULK = "bulk"

    @property
    def code(self) -> int:
        return CLASS_CODES[self]


CLASS_CODES = {RequestClass.LATENCY: 0, RequestClass.THROUGHPUT: 1, RequestClass.BULK: 2}
CLASS_BY_CODE = {code: cls for cls, code in CLASS_CODES.items()}


class ValidationError(ValueError):
    """Bad input: the message names the object, the field and the offending value."""


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request (slots: a million-request workload holds a million of them).

    `output_len` is the true output length: only the simulator, the scorer and the hindsight oracle
    read it; policies see a predictor's estimate. For bulk members `arrival` is the group's
    submission time; a DAG child is *released* only when its parents finish.

    A conversation's later turn (`after` set: a closed loop) has its conversation's `arrival` (the
    first turn's) and is *released* `think_time` seconds after turn `after` finishes
    (formulations.turns); its TTFT and QoE count from that release, which engines and policies
    show as its arrival. Turns are latency requests: a deadline would depend on the schedule.
    """

    id: str
    cls: RequestClass
    arrival: float
    prompt_len: int
    output_len: int
    ttft_target: float | None = None  # latency: seconds from arrival to the first token
    read_rate: float | None = None  # latency: tokens/s the user reads
    slack_ratio: float | None = None  # throughput: deadline = arrival + slack * T_alone
    group: str | None = None  # bulk: id of its Group
    prompt_text: str | None = None  # optional, for learned length predictors and real engines
    # Content, for prefix caching: ids of the request's consecutive `content_block`-token blocks of
    # its tokens, prompt then output (e.g. a trace's `hash_ids`; a multi-turn turn repeats the ids
    # of the earlier turns). Blocks at the same position with the same ids, after the same ids,
    # hold the same tokens; tokens past the last id are the request's own. None: all its own.
    content_ids: tuple[int, ...] | None = None
    content_block: int | None = None  # tokens per id of content_ids
    after: str | None = None  # closed loop: id of the conversation's previous turn
    think_time: float | None = None  # s between the previous turn's finish and this turn's release


@dataclass(frozen=True)
class Group:
    """A bulk group: members submitted together, `edges` (parent, child) form a DAG.

    The group's SLO: its last member completes by arrival + slack_ratio * T_alone(group).
    """

    id: str
    members: tuple[str, ...]
    arrival: float
    slack_ratio: float
    edges: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def dag(self) -> nx.DiGraph:
        """The members and edges as a graph, built on each call (not kept: a workload of many
        groups would hold one graph per group); read it once per use."""
        graph = nx.DiGraph()
        graph.add_nodes_from(self.members)
        graph.add_edges_from(self.edges)
        return graph
