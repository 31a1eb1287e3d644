"""`slosched run [CONFIG.toml]`: run an experiment on the simulator, print and save the metrics.

Writes OUT/metrics.json (config, versions, metrics per policy) and, unless `--schedules none`,
OUT/schedule-<policy>.jsonl.gz (gzip'd JSONL: one JSON object per scored request; `--schedules
jsonl` leaves it uncompressed). `--format` picks what stdout carries: the table (split to fit the
terminal), Markdown, CSV (seeds as mean/min/max) or one JSON document keyed by policy (`--json`);
with any but the table, stdout carries nothing else. The progress bar always goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from experiments.config import ExperimentConfig, load_config, with_overrides
from experiments.errors import CellFailed, ConfigError, one_line
from experiments.input_files import output_dir, write_atomically
from experiments.runner import CellResult, execute, expand_cells, git_commit, versions
from experiments.cli.dry_run import resolved_toml
from experiments.cli.run_table import caching, run_csv, run_table
from experiments.cli.tables import FORMATS, TextTable, output_console
from experiments.studies.gap_sweep import is_study_config
from experiments.cli.sweep_options import add_sweep_arguments, execute_sweep, is_sweep, sweep_out
from experiments.sweep.quick import quick
from experiments.values import POSITIVE_FLOAT, POSITIVE_INT, SEED
from solvers.policies.registry import POLICIES

METRICS = "metrics.json"
DEMO_CONFIG = Path(str(resources.files("experiments") / "configs" / "demo.toml"))
COLUMN_ROLES = ("arrival", "prompt", "output")
SCHEDULE_FORMATS = ("gz", "jsonl", "none")
SCHEDULE_SUFFIX = {"gz": ".jsonl.gz", "jsonl": ".jsonl"}
SUMMARY_KEYS = ("attainment", "attainment_by_class", "slo_met", "requests", "mean_qoe", "qoe_at_threshold",
                "ttft", "tbt", "jct", "throughput", "preemptions", "unfinished", "prefix_hit_rate")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="run an experiment (default: the demo) on the simulator",
                              description="Run an experiment config (workload x engine x policies) on the simulator.")
    p.add_argument("config", nargs="?", help=f"experiment TOML (default: the demo, {DEMO_CONFIG.name})")
    p.add_argument("--out", metavar="DIR", help="output directory (default: results/<config name>-<timestamp>)")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="stdout: table (default; split to fit the terminal), markdown, csv (one row per policy "
                        "x load: each metric's mean, min, max over seeds) or json (the metrics document)")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    p.add_argument("--schedules", choices=SCHEDULE_FORMATS,
                   help="per-policy schedule files of a single run: gz (default: schedule-<policy>.jsonl.gz, "
                        "gzip'd JSONL, one JSON object per request), jsonl (uncompressed) or none; sweeps store "
                        "their cells under OUT/cells and write none")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved config (TOML, marking what the command line set and what came from "
                        "defaults or the demo config) and exit without simulating")
    p.add_argument("--trace", metavar="PATH|NAME", help="trace file or registered name (azure-conv, azure-code) instead of the config's")
    p.add_argument("--columns", metavar="SPEC", help="trace column names: arrival=COL,prompt=COL,output=COL")
    p.add_argument("--time-unit", metavar="s|ms", help="unit of numeric arrival times in the trace: s or ms")
    p.add_argument("--policies", metavar="A,B", help="comma-separated policies, e.g. fcfs,edf")
    p.add_argument("--limit", type=POSITIVE_INT, metavar="N", help="use the first N requests")
    p.add_argument("--rate-scale", type=POSITIVE_FLOAT, metavar="X", help="multiply the arrival rate by X (divides arrival times)")
    p.add_argument("--seed", type=SEED, metavar="N", help="workload and predictor seed")
    add_sweep_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.config and is_study_config(args.config):  # e.g. gap.toml: the compare study as a sweep
        if args.dry_run or args.schedules or args.format in ("csv", "markdown"):
            raise ConfigError(f"{args.config} is a gap study config: --dry-run, --schedules and --format "
                              "csv|markdown only apply to experiment configs")
        from experiments.cli.gap_study import run_gap_command  # its report imports matplotlib: only a study pays
        return run_gap_command(args)
    config = configure(args)
    if args.dry_run:
        print(resolved_toml(args.config or DEMO_CONFIG, config, given=args.config is not None), end="")
        return 0
    cells = expand_cells(config)
    sweep = is_sweep(args, cells)
    if sweep and args.schedules not in (None, "none"):
        raise ConfigError(f"--schedules {args.schedules}: a sweep stores its cells under OUT/cells and writes no "
                          "schedule files")
    schedules = "none" if sweep else args.schedules or "gz"
    out = output_dir(sweep_out(args, config.name) if sweep else args.out or
                     Path("results") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    failure = None
    try:
        if sweep:
            results = execute_sweep(cells, out, args)  # stored per cell: outcomes without token times
        else:
            (out / METRICS).unlink(missing_ok=True)  # never next to schedules of another run
            results = _execute_with_progress(cells, out, args.keep_going, schedules)
    except CellFailed as err:
        failure, results = err, [r for r in err.partial or [] if r is not None]
    except KeyboardInterrupt:
        kept = f"finished cells are kept under {out}/cells: rerun the same command to resume" if sweep else \
            "no metrics.json written"
        raise KeyboardInterrupt(kept) from None
    note = inherited_note(args, config)
    if note:
        print(note, file=sys.stderr)
    document = metrics_document(results)
    if results and (failure is None or args.keep_going):
        write_metrics(out, config, results, document, failure)
    if results:
        _print_results(args.format, config, results, document, sweep)
        if args.format != "json":  # json: stdout is the document, stderr only errors (as before --format)
            print(_written(out, results, failure, args.keep_going, sweep, schedules),
                  file=sys.stdout if args.format == "table" else sys.stderr)
    if failure is not None:
        raise failure
    return 0


def _print_results(fmt: str, config: ExperimentConfig, results: list[CellResult], document: dict[str, Any],
                   sweep: bool) -> None:
    if fmt == "json":
        print(json.dumps(document, indent=1))
    elif fmt == "csv":
        print(run_csv(results), end="")
    elif fmt == "markdown":
        print(run_table(config, results, sweep).markdown(), end="")
    else:
        run_table(config, results, sweep).print(output_console())


def metrics_table(config: ExperimentConfig, results: list[CellResult]) -> TextTable:
    """The table of a single run (one row per policy; rich-printable), as `bench` prints its own run."""
    return run_table(config, results, sweep=False)


def _written(out: Path, results: list[CellResult], failure: CellFailed | None, keep_going: bool, sweep: bool,
             schedules: str) -> str:
    if failure is not None and not keep_going:
        return f"nothing written to {out}/metrics.json (a cell failed; --keep-going runs the others)"
    if sweep:
        return f"wrote {out}/metrics.json and {len(results)} cell(s) under {out}/cells (plots: slosched report {out})"
    if schedules == "none":
        return f"wrote {out}/metrics.json (no schedule files: --schedules none)"
    return (f"wrote {out}/metrics.json and {len(results)} schedule file(s) {out}/schedule-*{SCHEDULE_SUFFIX[schedules]} "
            "(JSONL: one JSON object per request)")


def configure(args: argparse.Namespace) -> ExperimentConfig:
    """The config file (or the demo) with the command line's overrides.

    `--trace` without a config reads the whole file at its own rate: the demo's `limit` and
    `rate_scale` belong to the demo's trace. What is still taken from the demo (class mix, SLOs,
    engine, predictor, policies) is said on stderr, since it shapes the result.
    """
    config = load_config(args.config or DEMO_CONFIG)
    trace_only = args.trace is not None and not args.config
    config = with_overrides(
        config, trace=args.trace, columns=parse_columns(args.columns) if args.columns else None,
        time_unit=args.time_unit, policies=parse_policies(args.policies) if args.policies is not None else None,
        limit=args.limit, rate_scale=args.rate_scale, seed=args.seed,
        whole_trace=trace_only and args.limit is None, own_rate=trace_only and args.rate_scale is None,
    )
    if args.quick:
        config = quick(config)
    return config


def inherited_note(args: argparse.Namespace, config: ExperimentConfig) -> str | None:
    """What a `--trace` run without a config took from the demo (said once the run is done, so
    an error in the trace stays the only line)."""
    if args.trace is None or args.config:
        return None
    mix = config.workload.mix
    return (f"slosched: note: --trace without a config: {config.workload.limit or 'every'} row(s) of {args.trace} "
            f"at rate x{config.workload.rate_scale:g}; from {DEMO_CONFIG.name}: class mix latency/throughput/bulk "
            f"{mix.latency:g}/{mix.throughput:g}/{mix.bulk:g}, their SLOs, engine kv_blocks="
            f"{config.engine.build().kv_blocks}, predictor {config.predictor.name}, policies "
            f"{','.join(config.policies)} (pass a config to change them)")


def parse_policies(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise ConfigError(f"--policies {text!r}: no policy named; give comma-separated names, e.g. fcfs,edf "
                          f"(valid: {', '.join(POLICIES)})")
    return names


def parse_columns(text: str) -> dict[str, str]:
    columns = {}
    for part in text.split(","):
        role, sep, column = part.partition("=")
        role, column = role.strip(), column.strip()
        if not sep or role not in COLUMN_ROLES or not column:
            raise ConfigError(f"--columns: {part!r} is not ROLE=COLUMN with ROLE one of {', '.join(COLUMN_ROLES)}")
        columns[role] = column
    return columns


def _execute_with_progress(cells: list, out: Path, keep_going: bool, schedules: str) -> list[CellResult]:
    """Run the cells here, each schedule streamed to OUT/schedule-<label>.jsonl[.gz] as it is scored."""
    console = Console(stderr=True)
    labels = cell_labels(cells)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task(f"simulating {len(cells)} cell(s)", total=len(cells))

        def advance(index: int, fraction: float) -> None:
            bar.update(task, completed=index + fraction, description=f"{cells[index].key}")

        paths = None if schedules == "none" else [out / f"schedule-{label}{SCHEDULE_SUFFIX[schedules]}"
                                                  for label in labels]
        return execute(cells, progress=advance, keep_going=keep_going, schedule_paths=paths, streamed_in=out)


def cell_labels(cells: list) -> list[str]:
    """The policy name when each policy runs once, else the cell key."""
    single = len({c.policy for c in cells}) == len(cells)
    return [c.policy if single else c.key for c in cells]


def summary(result: CellResult, with_point: bool) -> dict[str, Any]:
    """The headline metrics; with the sweep point (rate scale, seed and, in a sweep over it,
    prefix caching "on"/"off") for a sweep's list."""
    out = {k: result.metrics[k] for k in SUMMARY_KEYS if k in result.metrics}
    if with_point:
        variant = caching(result)
        out = {"rate_scale": result.rate_scale, "seed": result.seed,
               **({"prefix_caching": variant} if variant else {}), **out}
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


def write_metrics(out: Path, config: ExperimentConfig, results: list[CellResult], document: dict[str, Any],
                  failure: CellFailed | None = None) -> None:
    """OUT/metrics.json, written last and atomically: it exists only once every schedule file it
    describes is complete. A failed cell (with --keep-going) is listed under "failed"."""
    runs = {label: {"iterations": r.iterations, "wall_seconds": r.wall_seconds, "rate_scale": r.rate_scale,
                    "seed": r.seed, "metrics": r.metrics}
            for label, r in zip(cell_labels(results), results, strict=True)}
    failed = {} if failure is None else {"failed": one_line(failure)}
    write_atomically(out / METRICS, json.dumps({
        "experiment": config.name, "config": config.to_dict(), "versions": versions(),
        "git_commit": git_commit(), "policies": document, "runs": runs, **failed,
    }, indent=1, allow_nan=False))


