"""The `slosched` command line. Each sub-command lives in its own module in this package.."""

from __future__ import annotations

import argparse
import sys

from experiments.cli import compare, knapsack, predictor, report, run, serve_eval, solve
from experiments.sweep.backends import CellFailed
from formulations.online import PlanError
from formulations.requests import ValidationError

# Sub-command modules, in the order `slosched --help` lists them.
COMMANDS = [run, report, solve, knapsack, compare, predictor, serve_eval]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slosched", description="SLO-aware scheduling of LLM serving")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *(argv or [])])
    try:
        return args.handler(args)
    except (ValidationError, PlanError, FileNotFoundError, CellFailed) as err:
        print(f"slosched: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
