"""`slosched run GAP.toml`: the optimality-gap study's cells on a sweep backend, a table and
OUT/metrics.json (the study itself: experiments/studies/gap_sweep.py)."""

from __future__ import annotations

import json
from typing import Any

from experiments.cli.sweep_options import progress_bar, sweep_out
from experiments.errors import ConfigError
from experiments.report.gap import gap_table, pooled, ratios, step_gap_lines
from experiments.studies.gap_sweep import STUDY, GapCell, load_gap_cells, run_gap_cell
from experiments.sweep.sweep import run_sweep

EXPERIMENT_ONLY = ("trace", "columns", "time_unit", "limit", "rate_scale", "seed", "policies")


def run_gap_command(args: Any) -> int:
    """`slosched run GAP.toml`: the study's cells on the sweep backend, a table, OUT/metrics.json."""
    given = [f"--{k.replace('_', '-')}" for k in EXPERIMENT_ONLY if getattr(args, k, None) is not None]
    if given:
        raise ConfigError(f"{args.config} is a gap study config: {', '.join(given)} only apply to experiment configs")
    name, cells = load_gap_cells(args.config, quick=args.quick)
    out = sweep_out(args, name)
    backend = args.backend or "local"
    with progress_bar(len(cells), backend, out) as progress:
        outcome = run_sweep(cells, run_gap_cell, out, backend=backend, workers=args.workers, address=args.address,
                            progress=progress, describe=GapCell.to_dict, keep_going=args.keep_going)
    pools = pooled([{"cell": c.to_dict(), "result": r} for c, r in zip(cells, outcome.results, strict=True)])
    document = {str(noise): {p: {"mean_ratio": float(ratios(pool["instances"], p).mean()),
                                 "min_ratio": float(ratios(pool["instances"], p).min()),
                                 "instances": len(pool["instances"])} for p in pool["policies"]}
                for noise, pool in pools.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"experiment": name, "study": STUDY, "by_noise": document}, indent=1))
    if args.format == "json":
        print(json.dumps(document, indent=1))
    else:
        print(gap_table(pools))
        print("\n".join(step_gap_lines(pools)))
        print(f"wrote {out}/metrics.json and {len(cells)} cell(s) under {out}/cells (plots: slosched report {out})")
    return 0
