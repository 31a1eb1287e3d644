"""The `slosched` command line. Each sub-command lives in its own module in this package.."""

from __future__ import annotations

import argparse
import os
import sys

from experiments.cli import bench, compare, gap, knapsack, predictor, report, run, serve_eval, solve
from experiments.cli import list as list_command
from experiments.sweep.backends import CellFailed
from formulations.online import PlanError
from formulations.requests import ValidationError

# Sub-command modules, in the order `slosched --help` lists them.
COMMANDS = [run, report, solve, knapsack, compare, gap, predictor, serve_eval, bench, list_command]


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
        code = args.handler(args)
        sys.stdout.flush()  # a reader that went away shows up here, not in the interpreter's exit
        return code
    except (ValidationError, PlanError, FileNotFoundError, CellFailed) as err:
        print(f"slosched: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`slosched solve ... | head -2`): not an error of ours
        _silence_stdout()
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside a solve
        print("slosched: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
