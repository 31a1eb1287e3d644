"""`slosched report RESULTS_DIR`: render PNG plots and summary.md from stored sweep cells."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="plots and a markdown summary of a results directory",
                              description="Render PNG plots and summary.md from RESULTS_DIR/cells/*.json.")
    p.add_argument("results_dir", help="directory written by `slosched run --out DIR`")
    p.add_argument("--out", help="where to write the report (default: RESULTS_DIR/report)")
    p.add_argument("--qoe-threshold", type=float, default=0.95,
                   help="mean-QoE level that defines capacity (default 0.95, as in Andes)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from experiments.report import render_report  # matplotlib loads only for this command

    if not Path(args.results_dir).is_dir():
        raise FileNotFoundError(f"results directory {args.results_dir!r} not found")
    for path in render_report(args.results_dir, args.out, args.qoe_threshold):
        print(path)
    return 0
