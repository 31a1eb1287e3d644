"""The `slosched` command line. Each sub-command lives in its own module in this package.."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from experiments.cli import compare, knapsack, predictor, report, run, serve_eval, solve
from experiments.errors import CellFailed, ConfigError, one_line
from formulations.online import PlanError
from formulations.requests import ValidationError

# Sub-command modules, in the order `slosched --help` lists them.
COMMANDS = [run, report, solve, knapsack, compare, predictor, serve_eval]


class UsageError(ConfigError):
    """A command line argparse rejects (unknown option, a value of the wrong type or range)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (no usage block), like every other error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="slosched", description="SLO-aware scheduling of LLM serving")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(["run", *(argv or [])])
        code = args.handler(args)
        sys.stdout.flush()  # a reader that went away shows up here, not in the interpreter's exit
        return code
    except BrokenPipeError:  # the reader went away (`slosched solve ... | head -2`): not an error of ours
        _silence_stdout()
        return 1
    except (ValidationError, PlanError, OSError, CellFailed) as err:
        print(f"slosched: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # a sweep says what it kept; a second Ctrl-C in a solve
        print(f"slosched: interrupted{f'; {err}' if str(err) else ''}", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
