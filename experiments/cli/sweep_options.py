"""The sweep side of `slosched run`: options, when to sweep, and running cells with a progress bar.

A run is a sweep when the config has more than one cell per policy (a [sweep] grid) or a
backend is asked for explicitly. Sweeps store each cell under OUT/cells/ and reuse stored
cells, so their default OUT has no timestamp: running the same command again resumes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from experiments.runner import Cell, CellResult
from experiments.sweep.backends import BACKENDS
from experiments.sweep.cells import execute_cells
from experiments.values import POSITIVE_INT


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "sweep", "A config with a [sweep] grid runs its cells (rate scale x seed x policy) in parallel and stores "
                 "each under OUT/cells/ (default OUT: results/<name>); rerunning the same command reuses every "
                 "finished cell (delete OUT to recompute after changing code).")
    g.add_argument("--backend", choices=BACKENDS,
                   help="where cells run: local (process pool, the default for sweeps), sequential, ray")
    g.add_argument("--workers", type=POSITIVE_INT, help="local worker processes (default: CPU count)")
    g.add_argument("--address", help="Ray cluster address for --backend ray (e.g. auto, ray://head:10001); "
                                     "default: start a local Ray instance")
    g.add_argument("--keep-going", action="store_true",
                   help="run every other cell when one fails (then exit with an error naming it)")
    g.add_argument("--quick", action="store_true",
                   help="smaller preset for CI: 300 requests, 4 rate scales, one seed (experiment name gets -quick)")


def is_sweep(args: argparse.Namespace, cells: list[Cell]) -> bool:
    return args.backend is not None or len(cells) > len({c.policy for c in cells})


def sweep_out(args: argparse.Namespace, name: str) -> Path:
    return Path(args.out) if args.out else Path("results") / name


@contextmanager
def progress_bar(total: int, backend: str, out: Path) -> Iterator[Callable[[int, int], None]]:
    """A cells-done bar on stderr (hidden when stderr is not a terminal); yields progress(done, total).
    The first call counts the cells already stored: said in one line, since they are not recomputed."""
    console = Console(stderr=True, highlight=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"{total} cell(s) on {backend}", total=total)
        started = False

        def progress(done: int, cells: int) -> None:
            nonlocal started
            if not started and done:
                console.print(reuse_line(done, cells, out), soft_wrap=True)
            started = True
            bar.update(task, completed=done)

        yield progress


def reuse_line(reused: int, total: int, out: Path) -> str:
    return f"slosched: reusing {reused} of {total} finished cells in {out}; delete {out} to recompute"


def execute_sweep(cells: list[Cell], out: Path, args: argparse.Namespace) -> list[CellResult]:
    backend = args.backend or "local"
    with progress_bar(len(cells), backend, out) as progress:
        return execute_cells(cells, out, backend=backend, workers=args.workers, address=args.address,
                             keep_going=args.keep_going, progress=progress)
