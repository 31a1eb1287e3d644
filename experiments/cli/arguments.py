"""Argument types shared by several sub-commands (argparse turns their errors into a one-line usage error, exit 2)."""

from __future__ import annotations

import argparse

from formulations.requests import ValidationError
from solvers.result import check_time_limit


def time_limit(text: str) -> float:
    """--time-limit: seconds, finite and > 0 (a solver given 0, -1 or nan proves nothing)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    try:
        return check_time_limit(seconds, "--time-limit")
    except ValidationError:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number of seconds > 0") from None


def interrupted_exit_code(signal_name: str | None) -> int:
    """128 + the signal number, as a shell reports a process ended by that signal."""
    import signal

    return 128 + int(getattr(signal, signal_name or "SIGINT"))
