"""An instance's requests held as numpy columns, each `Request` object made only when asked for.

A generated workload of a million requests as `Request` objects (with their floats and ints) is
~400 MB; as columns it is ~50 MB. `RequestColumns` is a read-only sequence of `Request`: code that
reads `instance.requests[i]` or loops over them sees the same requests either way, while the
simulator and the scorer read the columns (via `Instance.table`) and never make the objects.
Conversation turns and prompt texts are not columns: workloads with them keep a tuple.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from formulations.requests import CLASS_BY_CODE, Request, RequestClass


@dataclass(frozen=True, eq=False)
class NumberedIds(Sequence[str]):
    """The ids `prefix`0 .. `prefix`{n-1} in order (a generated workload's), without a million
    strings: id k is made when read, and `positions` maps an id back to k by parsing it."""

    prefix: str
    n: int

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, k: int) -> str: ...

    @overload
    def __getitem__(self, k: slice) -> list[str]: ...

    def __getitem__(self, k: int | slice) -> str | list[str]:
        if isinstance(k, slice):
            return [f"{self.prefix}{i}" for i in range(*k.indices(self.n))]
        if not -self.n <= k < self.n:
            raise IndexError(f"id index {k} out of range for {self.n} ids")
        return f"{self.prefix}{k % self.n}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == self.n and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def positions(self) -> Mapping[str, int]:
        return _NumberedPositions(self)


class _NumberedPositions(Mapping[str, int]):
    """id -> position for NumberedIds (a read-only dict that holds nothing)."""

    def __init__(self, ids: NumberedIds) -> None:
        self._ids = ids

    def __getitem__(self, rid: str) -> int:
        digits = rid[len(self._ids.prefix):] if isinstance(rid, str) and rid.startswith(self._ids.prefix) else ""
        if digits.isascii() and digits.isdigit() and (digits == "0" or digits[0] != "0") and int(digits) < self._ids.n:
            return int(digits)
        raise KeyError(rid)

    def __len__(self) -> int:
        return self._ids.n

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)


@dataclass(frozen=True, eq=False)
class RequestColumns(Sequence[Request]):
    """Request i is row i of every column (nan / -1 where the request's class has no such field)."""

    ids: Sequence[str]
    cls: np.ndarray  # int8 class code (formulations.requests.CLASS_CODES)
    arrival: np.ndarray  # float64
    prompt_len: np.ndarray  # int64
    output_len: np.ndarray  # int64
    ttft_target: np.ndarray  # float64, nan unless latency
    read_rate: np.ndarray  # float64, nan unless latency
    slack_ratio: np.ndarray  # float64, nan unless throughput
    group: np.ndarray  # int64 index into group_ids, -1 unless bulk
    group_ids: tuple[str, ...] = ()
    content_ids: Sequence[tuple[int, ...] | None] | None = None  # per request; None: no request has any
    content_block: int | None = None  # tokens per content id (requests with content_ids)

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("cls", "arrival", "prompt_len", "output_len", "ttft_target", "read_rate", "slack_ratio", "group"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"RequestColumns: column {name} has {len(getattr(self, name))} rows, ids has {n}")

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> Request: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[Request, ...]: ...

    def __getitem__(self, i: int | slice) -> Request | tuple[Request, ...]:
        if isinstance(i, slice):
            return tuple(self._request(k) for k in range(*i.indices(len(self))))
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"request index {i} out of range for {n} requests")
        return self._request(i % n)

    def __iter__(self) -> Iterator[Request]:
        return (self._request(k) for k in range(len(self)))

    def positions(self) -> Mapping[str, int]:
        """Request id -> index."""
        if isinstance(self.ids, NumberedIds):
            return self.ids.positions()
        return {rid: k for k, rid in enumerate(self.ids)}

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same requests (a tuple of them included)."""
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def _request(self, k: int) -> Request:
        cls = CLASS_BY_CODE[int(self.cls[k])]
        content = None if self.content_ids is None else self.content_ids[k]
        return Request(
            id=self.ids[k], cls=cls, arrival=float(self.arrival[k]), prompt_len=int(self.prompt_len[k]),
            output_len=int(self.output_len[k]),
            ttft_target=float(self.ttft_target[k]) if cls is RequestClass.LATENCY else None,
            read_rate=float(self.read_rate[k]) if cls is RequestClass.LATENCY else None,
            slack_ratio=float(self.slack_ratio[k]) if cls is RequestClass.THROUGHPUT else None,
            group=self.group_ids[self.group[k]] if self.group[k] >= 0 else None,
            content_ids=content, content_block=None if content is None else self.content_block,
        )
