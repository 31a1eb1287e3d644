"""The `slosched` command line. Each sub-command lives in its own module under commands/."""

from __future__ import annotations

import argparse
import sys

from experiments.commands import predictor, run
from experiments.commands import serve_eval
from experiments.commands import knapsack as knapsack_cmd
from experiments.commands import solve as solve_cmd
from formulations.online import PlanError
from formulations.requests import ValidationError
from experiments.commands import compare as compare_cmd

COMMANDS: list = [
    run,
    predictor,
    serve_eval,
    solve_cmd,
    knapsack_cmd,
]  # sub-command modules, in the order `slosched --help` lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slosched", description="SLO-aware scheduling of LLM serving")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


COMMANDS.append(compare_cmd)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *(argv or [])])
    try:
        return args.handler(args)
    except (ValidationError, PlanError, FileNotFoundError) as err:
        print(f"slosched: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
