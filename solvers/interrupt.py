"""Ctrl-C and SIGTERM stop a running exact solve cleanly: it returns its incumbent and proven bound.

Python runs signal handlers only in the main thread, between bytecodes, and CP-SAT, HiGHS and a
CBC child process all run outside the interpreter; so the solver runs in a worker thread while
the main thread waits in short joins, and the handler asks the solver to stop the way it
supports (CP-SAT `StopSearch`, HiGHS `cancelSolve`, SIGINT to the CBC child, which CBC treats as
its time limit: it writes the incumbent). The first signal only sets `requested` (callers then
start no further phase and report `interrupted`); the handlers that were there before come back
at once, so a second Ctrl-C acts as usual (KeyboardInterrupt). Outside the main thread (a sweep
worker, a test runner thread) no handler is installed and the solver runs inline.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
POLL_SECONDS = 0.05
SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopToken:
    """Whether a stop was requested (and by which signal)."""

    requested: bool = False
    signal_name: str | None = None

    def request(self, signum: int) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def run(self, work: Callable[[], T], stop: Callable[[], None]) -> T:
        """`work()` in a worker thread; `stop()` is called (repeatedly, so it must be idempotent)
        while a stop is requested and the work has not returned."""
        if threading.current_thread() is not threading.main_thread():
            return work()
        box: dict[str, object] = {}

        def target() -> None:
            try:
                box["value"] = work()
            except BaseException as err:  # re-raised in the caller's thread below
                box["error"] = err

        worker = threading.Thread(target=target, name="exact-solver", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(POLL_SECONDS)
            if self.requested:
                stop()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]


_active: StopToken | None = None


@contextlib.contextmanager
def interruptible() -> Iterator[StopToken]:
    """A stop token for one solve: SIGINT/SIGTERM set it (once) while the block runs.

    Nested blocks share the outermost token, so a caller that solves many times (a CLI looping
    over problems, a search calling `solve`) sees the stop too and can end its loop."""
    global _active
    if _active is not None:
        yield _active
        return
    token = StopToken()
    if threading.current_thread() is not threading.main_thread():
        yield token
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def handler(signum: int, frame) -> None:
        token.request(signum)
        restore()

    for sig in SIGNALS:
        signal.signal(sig, handler)
    _active = token
    try:
        yield token
    finally:
        _active = None
        restore()
