"""Per-cell result files: one JSON per finished cell, written atomically, keyed by a config hash.

Why files and not one big results file: a sweep can be killed at any moment (Ctrl-C, a lost
cluster node, a CI timeout). Each finished cell is written to a temporary file in the same
directory and then `os.replace`d onto its final name, which is atomic on POSIX, so a reader (or
the next run) sees either the whole cell or nothing. The key is a hash of the cell's canonical
JSON, so the same cell always maps to the same file and a rerun skips it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from experiments.input_files import write_atomically

CELLS_DIR = "cells"
KEY_LENGTH = 16  # hex digits of sha256: 64 bits, no collision in any realistic sweep


def plain_dict(obj: Any, what: str) -> dict[str, Any]:
    """The plain-data form of a cell or a cell's result: a dict as is, its `to_dict()`, or a
    dataclass's fields; `what` names the object in the error."""
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"{what} is a {type(obj).__name__}; expected a dict, a dataclass or an object with to_dict()")


def cell_dict(cell: Any) -> dict[str, Any]:
    """The plain-data form of a cell (what its key is computed from)."""
    return plain_dict(cell, "a cell")


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace: equal data gives equal text (and equal hashes)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def cell_key(cell: Any) -> str:
    """A stable hash of the cell's configuration (independent of dict order and of the process)."""
    return hashlib.sha256(canonical_json(cell_dict(cell)).encode()).hexdigest()[:KEY_LENGTH]


class ResultStore:
    """The cell results of one sweep under `root/cells/<key>.json`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / CELLS_DIR

    def path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.json"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def keys(self) -> set[str]:
        if not self.cells_dir.is_dir():
            return set()
        return {p.stem for p in self.cells_dir.glob("*.json")}

    def write(self, key: str, cell: dict[str, Any], result: dict[str, Any]) -> Path:
        """Write one finished cell atomically (temp file in the same directory + os.replace)."""
        write_atomically(self.path(key), json.dumps({"key": key, "cell": cell, "result": result}, allow_nan=False))
        return self.path(key)

    def read(self, key: str) -> dict[str, Any]:
        """The stored record {"key", "cell", "result"} of one cell; a damaged file is a ValueError."""
        path = self.path(key)
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: corrupt cell result ({err}); delete it to recompute the cell") from None
        if not isinstance(record, dict) or not isinstance(record.get("result"), dict):
            raise ValueError(f"{path}: not a cell result (no 'result' object)")
        if record.get("key") != key:
            raise ValueError(f"{path}: holds key {record.get('key')!r}, expected {key!r}")
        return record

    def readable_keys(self, keys: set[str]) -> set[str]:
        """The stored keys among `keys` whose file reads back; a damaged file (a disk that filled
        up, a copy cut short) is deleted with a warning on stderr so that its cell is recomputed."""
        good = set()
        for key in keys & self.keys():
            try:
                self.read(key)
            except ValueError as err:
                print(f"slosched: warning: {err}; recomputing that cell", file=sys.stderr)
                self.path(key).unlink(missing_ok=True)
                continue
            good.add(key)
        return good

    def records(self) -> Iterator[dict[str, Any]]:
        """Every stored record, in key order (stable across runs)."""
        for key in sorted(self.keys()):
            yield self.read(key)

    def remove_stale_temporaries(self) -> int:
        """Delete temp files left by a run killed mid-write; they never count as results."""
        if not self.cells_dir.is_dir():
            return 0
        stale = list(self.cells_dir.glob(".*.tmp"))
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)
