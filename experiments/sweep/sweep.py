"""Run a sweep of cells with resume: finished cells are stored per cell and never recomputed.

`run_sweep(cells, fn, out_dir)` keys each cell by the hash of its configuration, skips every
cell whose result file already exists under `out_dir`, runs the rest on a backend, and writes
each result the moment it arrives. Killing a sweep at any point loses at most the cells that
were running; rerunning the same command finishes the rest and returns the same results as an
uninterrupted run (cells are deterministic: every random choice in a cell takes its seed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.sweep.backends import CellFailed, make_backend
from experiments.sweep.store import ResultStore, cell_dict, cell_key, plain_dict


@dataclass
class SweepOutcome:
    """Results in the order of the given cells (duplicates share one result) plus bookkeeping."""

    results: list[dict[str, Any]]
    keys: list[str]
    computed: list[str] = field(default_factory=list)  # keys computed by this run
    reused: list[str] = field(default_factory=list)  # keys found already stored


def result_dict(result: Any) -> dict[str, Any]:
    """The plain-data form of a cell result."""
    return plain_dict(result, "a cell's result")


def run_sweep(
    cells: Sequence[Any],
    fn: Callable[[Any], Any],
    out_dir: str | Path | None = None,
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    describe: Callable[[Any], dict[str, Any]] = cell_dict,
    keep_going: bool = False,
) -> SweepOutcome:
    """Compute `fn(cell)` for every cell not yet stored under `out_dir` and return all results.

    `out_dir=None` keeps results in memory only (no resume). `progress(done, total)` is called
    once at the start (counting reused cells as done) and after each finished cell.
    `describe(cell)` is the plain data that identifies a cell: it is hashed into the key and
    stored next to the result. A failing cell raises `CellFailed` after the cells that finished
    are stored; with `keep_going` every other cell is run first.
    """
    keys = [cell_key(describe(c)) for c in cells]
    unique: dict[str, Any] = {}
    for key, cell in zip(keys, cells, strict=True):
        unique.setdefault(key, cell)
    store = ResultStore(out_dir) if out_dir is not None else None
    memory: dict[str, dict[str, Any]] = {}
    if store is not None:
        store.remove_stale_temporaries()
        stored = store.readable_keys(set(unique))
    else:
        stored = set()
    reused = [k for k in unique if k in stored]
    todo = [k for k in unique if k not in stored]
    computed: list[str] = []
    total = len(unique)
    if progress is not None:
        progress(len(reused), total)

    def on_done(i: int, result: Any) -> None:
        key = todo[i]
        data = result_dict(result)
        if store is not None:
            store.write(key, describe(unique[key]), data)
        else:
            memory[key] = json.loads(json.dumps(data))  # same plain types as a stored result
        computed.append(key)
        if progress is not None:
            progress(len(reused) + len(computed), total)

    def finished() -> list[dict[str, Any] | None]:
        """Results in cell order, None for a cell that has none (yet)."""
        done = {*reused, *computed}
        by_key = {k: store.read(k)["result"] if store is not None else memory[k] for k in done}
        return [by_key.get(k) for k in keys]

    try:
        make_backend(backend, workers=workers, address=address).run(fn, [unique[k] for k in todo], on_done,
                                                                     keep_going)
    except CellFailed as failure:
        failure.partial = finished()
        raise
    return SweepOutcome(results=finished(), keys=keys, computed=computed, reused=reused)
