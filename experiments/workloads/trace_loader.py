"""Load request traces (arrival, prompt tokens, output tokens) from CSV or JSONL files.

Traces come from many places with their own column names and time formats, so the columns are
configurable and arrivals may be datetimes (`2023-11-16 18:15:46.6805900`) or numbers in seconds
or milliseconds. Every malformed row is an error naming the file, line and column: a silently
skipped row would change the load a policy is measured under.

The shipped traces are registered by name in `TRACES` (see experiments/traces/README.md).
"""

from __future__ import annotations

import csv
import io
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, UTC
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from experiments.errors import ConfigError
from experiments.input_files import parse_json, read_text
from formulations.requests import ValidationError

TIME_UNITS = {"s": 1.0, "ms": 1e-3}
FORMATS = ("csv", "jsonl")
MAX_TOKENS = 10**8  # no model has a context this long; larger is a corrupt or mis-mapped column


class TraceError(ValidationError):
    """A malformed trace file: the message names the file, line and column."""


@dataclass(frozen=True)
class Columns:
    """Which columns of a trace file hold the arrival time, prompt tokens and output tokens."""

    arrival: str = "TIMESTAMP"
    prompt: str = "ContextTokens"
    output: str = "GeneratedTokens"

    def as_dict(self) -> dict[str, str]:
        return {"arrival": self.arrival, "prompt": self.prompt, "output": self.output}


@dataclass(frozen=True)
class Trace:
    """Requests of a trace sorted by arrival; arrivals in seconds relative to the first one.

    `line` is each request's 1-based line in the file (the header is line 1 of a CSV), so a
    workload can always be traced back to its source rows.
    """

    source: str
    arrival: np.ndarray  # float64 seconds, arrival[0] == 0
    prompt_len: np.ndarray  # int64 >= 1
    output_len: np.ndarray  # int64 >= 1
    line: np.ndarray = field(repr=False)  # int64

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def span(self) -> float:
        return float(self.arrival[-1]) if len(self) else 0.0


@dataclass(frozen=True)
class TraceSpec:
    """A registered trace: where its file is and how to read it."""

    file: str
    columns: Columns = Columns()
    time_unit: str = "s"

    @property
    def path(self) -> Path:
        return Path(str(resources.files("experiments") / "traces" / self.file))


TRACES: dict[str, TraceSpec] = {
    "azure-conv": TraceSpec("azure_2023_conv.csv"),
    "azure-code": TraceSpec("azure_2023_code.csv"),
}


def resolve_trace(name_or_path: str) -> tuple[Path, TraceSpec | None]:
    """A registered name -> its file and spec; an existing path -> itself; else a ConfigError."""
    if name_or_path in TRACES:
        spec = TRACES[name_or_path]
        return spec.path, spec
    path = Path(name_or_path)
    if path.is_file():
        return path, None
    raise ConfigError(
        f"trace {name_or_path!r} is neither a registered trace (valid: {', '.join(TRACES)}) nor an existing file"
    )


def load_trace(
    name_or_path: str | Path,
    columns: Columns | None = None,
    time_unit: str | None = None,
    fmt: str | None = None,
) -> Trace:
    """Read a trace by registered name or path. `fmt` defaults to the file suffix (.jsonl -> jsonl)."""
    path, spec = resolve_trace(str(name_or_path))
    columns = columns or (spec.columns if spec else Columns())
    time_unit = time_unit or (spec.time_unit if spec else "s")
    if time_unit not in TIME_UNITS:
        raise ConfigError(f"time_unit={time_unit!r}; valid: {', '.join(TIME_UNITS)}")
    suffix = path.suffixes[-2] if path.suffix == ".gz" and len(path.suffixes) > 1 else path.suffix
    fmt = fmt or ("jsonl" if suffix in (".jsonl", ".ndjson") else "csv")
    if fmt not in FORMATS:
        raise ConfigError(f"trace format {fmt!r}; valid: {', '.join(FORMATS)}")
    text = read_text(path, "trace")
    rows = _csv_rows(path, text, columns) if fmt == "csv" else _jsonl_rows(path, text, columns)
    return _parse(str(path), rows, columns, TIME_UNITS[time_unit])


def _missing_column(path: Path, role: str, column: str, present: list[str], line: int | None = None) -> TraceError:
    where = f"{path}: line {line}: " if line is not None else f"{path}: "
    return TraceError(
        f"{where}column {column!r} ({role}) not found; columns present: {', '.join(map(str, present)) or 'none'}"
    )


Row = tuple[int, Any, Any, Any]  # line, arrival, prompt tokens, output tokens (as written)


def _csv_rows(path: Path, text: str, columns: Columns) -> Iterator[Row]:
    """The three columns of every non-blank row, one at a time (a million-row trace is never
    held as per-row dicts)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise TraceError(f"{path}: empty file (no header line)")
    header = [h.strip() for h in header]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise TraceError(f"{path}: line 1: column {repeated[0]!r} appears {header.count(repeated[0])} times; "
                         "rename or drop the extra one")
    for role, column in columns.as_dict().items():
        if column not in header:
            raise _missing_column(path, role, column, header)
    a, p, o = (header.index(c) for c in (columns.arrival, columns.prompt, columns.output))
    for record in reader:
        line = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue  # a blank line is not a row
        if len(record) != len(header):
            raise TraceError(f"{path}: line {line}: {len(record)} fields, the header has {len(header)}")
        yield line, record[a], record[p], record[o]


def _jsonl_rows(path: Path, text: str, columns: Columns) -> Iterator[Row]:
    for line, row in enumerate(io.StringIO(text), start=1):
        if not row.strip():
            continue
        record = parse_json(row, f"{path}: line {line}", TraceError)
        if not isinstance(record, dict):
            raise TraceError(f"{path}: line {line}: expected a JSON object, got {type(record).__name__}")
        for role, column in columns.as_dict().items():
            if column not in record:
                raise _missing_column(path, role, column, list(record), line)
        yield line, record[columns.arrival], record[columns.prompt], record[columns.output]


def _parse(source: str, rows: Iterator[Row], columns: Columns, unit: float) -> Trace:
    arrival, prompt, output, lines = array("d"), array("q"), array("q"), array("q")
    datetimes = None
    for line, arrives, prompt_tokens, output_tokens in rows:
        if datetimes is None:
            datetimes = _looks_like_datetime(arrives)
        where = f"{source}: line {line}, column"
        arrival.append(_arrival(arrives, datetimes, unit, f"{where} {columns.arrival!r}"))
        prompt.append(_tokens(prompt_tokens, f"{where} {columns.prompt!r}"))
        output.append(_tokens(output_tokens, f"{where} {columns.output!r}"))
        lines.append(line)
    if not lines:
        raise TraceError(f"{source}: no requests in the file")
    times = np.frombuffer(arrival, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    times = times[order]
    return Trace(source=source, arrival=times - times[0], prompt_len=np.frombuffer(prompt, dtype=np.int64)[order],
                 output_len=np.frombuffer(output, dtype=np.int64)[order],
                 line=np.frombuffer(lines, dtype=np.int64)[order])


def _looks_like_datetime(value: Any) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return False
    try:
        float(str(value))
    except ValueError:
        return True
    return False


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _arrival(value: Any, datetimes: bool, unit: float, where: str) -> float:
    if datetimes:
        if not isinstance(value, str):
            raise TraceError(f"{where}: {value!r} is not a datetime like the first row's")
        try:
            stamp = datetime.fromisoformat(value.strip())
        except ValueError:
            raise TraceError(f"{where}: {value!r} is not a datetime (e.g. 2023-11-16 18:15:46.680)") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return (stamp - _EPOCH).total_seconds()
    number = _number(value, where, "a number (arrival time)")
    if number < 0:
        raise TraceError(f"{where}: arrival {value!r} is negative")
    return number * unit


def _number(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or value is None:
        raise TraceError(f"{where}: {value!r} is not {what}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TraceError(f"{where}: {value!r} is not {what}") from None
    if not np.isfinite(number):
        raise TraceError(f"{where}: {value!r} is not {what}")
    return number


def _tokens(value: Any, where: str) -> int:
    number = _number(value, where, "a token count")
    if number != int(number):
        raise TraceError(f"{where}: {value!r} is not a whole token count")
    if not 1 <= number <= MAX_TOKENS:
        raise TraceError(f"{where}: token count {value!r} must be in [1, {MAX_TOKENS:,}]")
    return int(number)
