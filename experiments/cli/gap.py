"""`slosched gap CONFIG.toml`: each policy's optimality gap at realistic scale, per load.

Where the exact oracle is out of reach the gap is an interval: below by the best-known schedule
(the best policy improved by re-optimizing windows of it with CP-SAT, every candidate replayed
through the simulator), above by the upper bound on attainment (experiments/studies/gap_at_scale.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.config import load_config
from experiments.report.gap_scale import GAP_FILE, gap_markdown
from experiments.studies.gap_at_scale import GapSettings, LoadGap, gap_study
from solvers.bounds.interval_lp import BoundViolated


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gap", help="gap interval of every policy (best-known schedule and upper bound), per load")
    p.add_argument("config", help="experiment config (TOML)")
    p.add_argument("--rate-scales", type=lambda s: [float(x) for x in s.split(",")], default=None,
                   help="comma-separated loads (default: the config's [sweep] rate_scales, else its own)")
    p.add_argument("--bound-seconds", type=float, default=60.0, help="time limit of the bound per load (default 60)")
    p.add_argument("--search-seconds", type=float, default=60.0,
                   help="time limit of the best-known search per load (default 60)")
    p.add_argument("--results", type=Path, default=None, metavar="DIR",
                   help=f"also write DIR/{GAP_FILE} (`slosched report DIR` then plots gap vs load; use a "
                        "sweep's results directory to add the plot to its report)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    rates = args.rate_scales or list(config.sweep.rate_scales) or [config.workload.rate_scale]
    quiet = (lambda _msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    try:
        loads = gap_study(config, rates, GapSettings(args.bound_seconds, args.search_seconds), progress=quiet)
    except BoundViolated as err:
        print(f"slosched gap: FAILED: {err}", file=sys.stderr)
        return 3
    data = {"config": config.name, "loads": [g.to_dict() for g in loads]}
    if args.results:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / GAP_FILE).write_text(json.dumps(data, indent=1))
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        print(gap_markdown(data))
        print()
        print(notes(loads))
    return 0


def notes(loads: list[LoadGap]) -> str:
    """How each load's best-known and bound were obtained, one line per load."""
    return "\n".join(
        f"x{g.rate_scale:g}: {g.requests} requests; best-known from {g.best_source}; bound {g.bound['status']} in "
        f"{g.seconds['bound']:.1f} s ({g.bound['rows']} rows, {g.bound['alone_infeasible']} requests infeasible "
        f"alone); search {g.seconds['search']:.1f} s ({g.search['evaluations']} replays, "
        f"{g.search['improvements']} improvements, from {g.search['start']})" for g in loads)
