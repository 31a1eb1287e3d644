"""The `slosched` command line. Each sub-command lives in its own module in this package.

Only the module of the sub-command asked for is imported (all of them for `--help` or a command
line that names none): the solvers, report and bridge modules weigh ~200 MB that a million-request
`run` cannot spare.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from experiments.errors import CellFailed, ConfigError, one_line
from formulations.online import PlanError
from formulations.requests import ValidationError

# Sub-command names and their modules (in experiments.cli), in the order `slosched --help` lists them.
COMMANDS = {"run": "run", "report": "report", "solve": "solve", "knapsack": "knapsack", "compare": "compare",
            "gap": "gap", "predictor": "predictor", "serve-eval": "serve_eval", "bench": "bench", "list": "list"}
DEFAULT_COMMAND = "run"


class UsageError(ConfigError):
    """A command line argparse rejects (unknown option, a value of the wrong type or range)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (no usage block), like every other error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser(commands: Sequence[str] = tuple(COMMANDS)) -> argparse.ArgumentParser:
    """The parser with the sub-commands `commands` (default: all)."""
    parser = _Parser(prog="slosched", description="SLO-aware scheduling of LLM serving")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands:
        importlib.import_module(f"experiments.cli.{COMMANDS[name]}").register(sub)
    return parser


def commands_needed(argv: Sequence[str]) -> tuple[str, ...]:
    """The one sub-command a command line runs, or all of them when it asks for help, names none
    (the default command's own options may come first) or names an unknown one (so the error
    lists them)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in COMMANDS and not any(a in ("-h", "--help") for a in argv[:argv.index(first)]):
        return (first,)
    return tuple(COMMANDS)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser(commands_needed(argv))
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args([DEFAULT_COMMAND, *argv])
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
