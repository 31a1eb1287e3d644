"""`slosched serve-eval CONFIG.toml`: a policy online in vLLM vs the simulator vs the optimum.

The config is an experiment config plus a `[vllm]` table (experiments.studies.serve_eval.ServeSettings).
Needs vLLM (`pip install -e .[vllm]`, or the .venv-vllm that `make test` builds). Prints, per
policy, the online attainment, the simulated attainment (same workload, latency model fitted to
the run) and the online optimality gap; with --out writes serve_eval.json and
schedule-vllm-<policy>.jsonl (one scored request per line).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from experiments.config import config_from_dict, from_mapping, read_toml, with_overrides
from experiments.studies.serve_eval import ServeSettings, serve_eval, summary_rows


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve-eval", help="run policies online in vLLM; compare with the simulator and the optimum",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="experiment TOML with a [vllm] table (e.g. experiments/configs/serve_tiny.toml)")
    p.add_argument("--policies", help="comma-separated policies instead of the config's")
    p.add_argument("--limit", type=int, help="use the first N requests")
    p.add_argument("--out", help="directory for serve_eval.json and the scored schedules")
    p.set_defaults(handler=run)


def load(path: str) -> tuple:
    data = read_toml(path)
    serve = from_mapping(ServeSettings, data.pop("vllm", {}), "vllm")
    config = config_from_dict(data, default_name=Path(path).stem)
    config.validate()
    return config, serve


def run(args: argparse.Namespace) -> int:
    config, serve = load(args.config)
    policies = [p.strip() for p in args.policies.split(",")] if args.policies else None
    config = with_overrides(config, policies=policies, limit=args.limit)
    err = Console(stderr=True)
    results = serve_eval(config, serve, progress=lambda msg: err.print(f"[dim]{msg}[/dim]"))
    table = Table(title=f"{config.name}: online (vLLM) vs simulated vs optimal SLO attainment", box=box.SIMPLE)
    for column in ("policy", "online", "simulated", "optimal", "online gap"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for row in summary_rows(results):
        table.add_row(*row)
    Console().print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        document = {"config": config.to_dict(), "vllm": asdict(serve),
                    "policies": {r.policy: {k: v for k, v in asdict(r).items() if k != "outcomes"} for r in results}}
        (out / "serve_eval.json").write_text(json.dumps(document, indent=1, default=float))
        for r in results:
            with open(out / f"schedule-vllm-{r.policy}.jsonl", "w") as fh:
                fh.writelines(json.dumps(o) + "\n" for o in r.outcomes)
        print(f"wrote {out}/serve_eval.json", file=sys.stderr)
    return 0
