"""`slosched list [WHAT]`: every name a config or a flag accepts, so nobody reads source to find them.

Policies and predictors include installed plugins (entry points); each shows its constructor
parameters with their defaults, which are what `[policy_params.<name>]` / `[predictor]` accept.
"""

from __future__ import annotations

import argparse
import inspect
import json
from importlib import resources
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from experiments.cli.solve import EXAMPLES_DIR, example_names
from experiments.workloads.sharegpt.workload import TRACE_SPLITS
from experiments.workloads.trace_loader import TRACES
from formulations.latency_model import available_profiles, load_profile
from solvers.named import parameters
from solvers.policies.registry import policy_class, policy_names
from solvers.prediction.registry import predictor_class, predictor_names

SECTIONS = ("policies", "predictors", "profiles", "traces", "configs", "examples")
CONFIG_DIR = Path(str(resources.files("experiments") / "configs"))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="policies (with parameters), predictors, latency profiles, traces, configs, example instances",
                              description="List every name a config or flag accepts; plugins included.")
    p.add_argument("what", nargs="?", choices=SECTIONS, help="one section (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    sections = [args.what] if args.what else list(SECTIONS)
    document = {name: _ROWS[name]() for name in sections}
    if args.json:
        print(json.dumps(document, indent=1))
        return 0
    console = Console()
    for name in sections:
        console.print(_table(name, document[name]))
    return 0


def _class_rows(names: list[str], resolve) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        cls = resolve(name)
        rows.append({"name": name, "class": f"{cls.__module__}:{cls.__qualname__}",
                     "parameters": {k: _default(v) for k, v in parameters(cls).items()},
                     "summary": _first_line(cls.__doc__ or inspect.getmodule(cls).__doc__)})
    return rows


def _default(value: Any) -> Any:
    return "(required)" if value is inspect.Parameter.empty else value


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


def _profiles() -> list[dict[str, Any]]:
    rows = []
    for name in available_profiles():
        profile = load_profile(name)
        rows.append({"name": name, "kv_blocks": profile.kv_blocks, "block_size": profile.block_size,
                     "token_budget": profile.token_budget, "max_seqs": profile.max_seqs,
                     "summary": profile.latency.source})
    return rows


def _traces() -> list[dict[str, Any]]:
    shipped = [{"name": name, "summary": f"shipped CSV {spec.file}"} for name, spec in TRACES.items()]
    sharegpt = [{"name": name, "summary": f"ShareGPT {split} split (needs the predict extra)"}
                for name, split in TRACE_SPLITS.items()]
    return shipped + sharegpt


def _configs() -> list[dict[str, Any]]:
    rows = []
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        comment = next((line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        rows.append({"name": path.name, "path": str(path), "summary": comment})
    return rows


def _examples() -> list[dict[str, Any]]:
    """The instances `slosched solve --example NAME` solves (examples/ in the source tree)."""
    rows = []
    for name in example_names():
        data = json.loads((EXAMPLES_DIR / f"{name}.json").read_text())
        rows.append({"name": name, "summary": f"{len(data['requests'])} requests, "
                                              f"{data['engine']['kv_blocks']} KV blocks (slotted)"})
    return rows


_ROWS = {
    "policies": lambda: _class_rows(policy_names(), policy_class),
    "predictors": lambda: _class_rows(predictor_names(), predictor_class),
    "profiles": _profiles,
    "traces": _traces,
    "configs": _configs,
    "examples": _examples,
}


def _table(section: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=section, box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("name", no_wrap=True)
    if section in ("policies", "predictors"):
        table.add_column("parameters (default)")
        table.add_column("class / summary", overflow="fold")
        for r in rows:
            params = ", ".join(f"{k}={v}" for k, v in r["parameters"].items()) or "-"
            table.add_row(r["name"], params, f"{r['class']}\n{r['summary']}")
    elif section == "profiles":
        table.add_column("KV blocks x size, budget, seqs", no_wrap=True)
        table.add_column("source")
        for r in rows:
            table.add_row(r["name"], f"{r['kv_blocks']} x {r['block_size']}, {r['token_budget']}, {r['max_seqs']}",
                          r["summary"])
    else:
        table.add_column("summary")
        for r in rows:
            table.add_row(r["name"], r["summary"])
    return table
