"""`slosched run [CONFIG.toml]`: run an experiment on the simulator, print and save the metrics.

Writes OUT/metrics.json (config, versions, metrics per policy) and OUT/schedule-<policy>.jsonl
(one scored request per line). With --json, stdout carries only one JSON document keyed by
policy; the progress bar always goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from experiments.config import ExperimentConfig, load_config, with_overrides
from experiments.errors import ConfigError
from experiments.runner import CellResult, execute, expand_cells, git_commit, versions
from experiments.cli.gap_study import run_gap_command
from experiments.studies.gap_sweep import is_study_config
from experiments.cli.sweep_options import add_sweep_arguments, execute_sweep, is_sweep, sweep_out
from experiments.sweep.quick import quick

DEMO_CONFIG = Path(str(resources.files("experiments") / "configs" / "demo.toml"))
COLUMN_ROLES = ("arrival", "prompt", "output")
SUMMARY_KEYS = ("attainment", "attainment_by_class", "slo_met", "requests", "mean_qoe", "qoe_at_threshold",
                "ttft", "tbt", "jct", "throughput", "preemptions", "unfinished")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="run an experiment (default: the demo) on the simulator",
                              description="Run an experiment config (workload x engine x policies) on the simulator.")
    p.add_argument("config", nargs="?", help=f"experiment TOML (default: the demo, {DEMO_CONFIG.name})")
    p.add_argument("--out", metavar="DIR", help="output directory (default: results/<config name>-<timestamp>)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON document on stdout, nothing else")
    p.add_argument("--trace", metavar="PATH|NAME", help="trace file or registered name (azure-conv, azure-code) instead of the config's")
    p.add_argument("--columns", metavar="SPEC", help="trace column names: arrival=COL,prompt=COL,output=COL")
    p.add_argument("--time-unit", metavar="s|ms", help="unit of numeric arrival times in the trace: s or ms")
    p.add_argument("--policies", metavar="A,B", help="comma-separated policies, e.g. fcfs,edf")
    p.add_argument("--limit", type=int, metavar="N", help="use the first N requests")
    p.add_argument("--rate-scale", type=float, metavar="X", help="multiply the arrival rate by X (divides arrival times)")
    p.add_argument("--seed", type=int, metavar="N", help="workload and predictor seed")
    add_sweep_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.config and is_study_config(args.config):  # e.g. gap.toml: the compare study as a sweep
        return run_gap_command(args)
    config = load_config(args.config or DEMO_CONFIG)
    config = with_overrides(
        config, trace=args.trace, columns=parse_columns(args.columns) if args.columns else None,
        time_unit=args.time_unit, policies=_split(args.policies) if args.policies else None,
        limit=args.limit, rate_scale=args.rate_scale, seed=args.seed,
    )
    if args.quick:
        config = quick(config)
    cells = expand_cells(config)
    if is_sweep(args, cells):
        out = sweep_out(args, config.name)
        results = execute_sweep(cells, out, args)  # stored per cell: outcomes without token times
    else:
        results = _execute_with_progress(cells)
        out = Path(args.out) if args.out else Path("results") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    document = metrics_document(results)
    write_outputs(out, config, results, document, schedules=not is_sweep(args, cells))
    if args.json:
        print(json.dumps(document, indent=1))
    else:
        console = Console()
        if not console.is_terminal:  # piped: do not squeeze the table into 80 columns
            console = Console(width=140)
        console.print(metrics_table(config, results))
        if is_sweep(args, cells):
            console.print(f"wrote {out}/metrics.json and {len(results)} cell(s) under {out}/cells "
                          f"(plots: slosched report {out})")
        else:
            console.print(f"wrote {out}/metrics.json and {len(results)} schedule file(s)")
    return 0


def parse_columns(text: str) -> dict[str, str]:
    columns = {}
    for part in text.split(","):
        role, sep, column = part.partition("=")
        role, column = role.strip(), column.strip()
        if not sep or role not in COLUMN_ROLES or not column:
            raise ConfigError(f"--columns: {part!r} is not ROLE=COLUMN with ROLE one of {', '.join(COLUMN_ROLES)}")
        columns[role] = column
    return columns


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _execute_with_progress(cells: list) -> list[CellResult]:
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"simulating {len(cells)} cell(s)", total=len(cells))

        def advance(index: int, fraction: float) -> None:
            bar.update(task, completed=index + fraction, description=f"{cells[index].key}")

        return execute(cells, progress=advance)


def _labels(results: list[CellResult]) -> list[str]:
    """The policy name when each policy ran once, else the cell key."""
    single = len({r.policy for r in results}) == len(results)
    return [r.policy if single else r.key for r in results]


def summary(result: CellResult, with_point: bool) -> dict[str, Any]:
    out = {k: result.metrics[k] for k in SUMMARY_KEYS}
    if with_point:
        out = {"rate_scale": result.rate_scale, "seed": result.seed, **out}
    return out


def metrics_document(results: list[CellResult]) -> dict[str, Any]:
    """Keyed by policy: its summary, or (for a sweep) a list of summaries with rate_scale and seed."""
    single = len({r.policy for r in results}) == len(results)
    doc: dict[str, Any] = {}
    for r in results:
        if single:
            doc[r.policy] = summary(r, with_point=False)
        else:
            doc.setdefault(r.policy, []).append(summary(r, with_point=True))
    return doc


def write_outputs(out: Path, config: ExperimentConfig, results: list[CellResult], document: dict[str, Any],
                  schedules: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runs = {label: {"iterations": r.iterations, "wall_seconds": r.wall_seconds, "rate_scale": r.rate_scale,
                    "seed": r.seed, "metrics": r.metrics}
            for label, r in zip(_labels(results), results, strict=True)}
    (out / "metrics.json").write_text(json.dumps({
        "experiment": config.name, "config": config.to_dict(), "versions": versions(),
        "git_commit": git_commit(), "policies": document, "runs": runs,
    }, indent=1))
    for label, r in zip(_labels(results), results, strict=True):
        if not schedules:  # a sweep: every cell is already stored under out/cells/
            break
        with (out / f"schedule-{label}.jsonl").open("w") as fh:
            for outcome in r.outcomes:
                line = {"id": outcome["id"], "class": outcome["class"], **outcome}  # id, class first
                fh.write(json.dumps(line) + "\n")


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def metrics_table(config: ExperimentConfig, results: list[CellResult]) -> Table:
    table = Table(title=f"{config.name}: {results[0].metrics['requests']} requests, predictor {config.predictor.name} "
                        "(SLO attainment: all / per class)", box=box.SIMPLE_HEAD)
    for header in ("policy", "SLO all", "latency", "thrpt", "bulk", "mean QoE", "TTFT p50/p99 s",
                   "TBT p50/p99 ms", "JCT p50/p99 s", "tok/s", "preempt"):
        table.add_column(header, justify="left" if header == "policy" else "right", no_wrap=True)
    for label, r in zip(_labels(results), results, strict=True):
        m = r.metrics
        by = m["attainment_by_class"]
        table.add_row(
            label, _fmt(m["attainment"], 100, 1) + "%",
            *(_fmt(by[c], 100, 1) + ("%" if by[c] is not None else "") for c in ("latency", "throughput", "bulk")),
            _fmt(m["mean_qoe"], 1, 3),
            f"{_fmt(m['ttft']['p50'])}/{_fmt(m['ttft']['p99'])}",
            f"{_fmt(m['tbt']['p50'], 1000, 0)}/{_fmt(m['tbt']['p99'], 1000, 0)}",
            f"{_fmt(m['jct']['p50'], 1, 1)}/{_fmt(m['jct']['p99'], 1, 1)}",
            _fmt(m["throughput"], 1, 0), str(m["preemptions"]),
        )
    return table
