"""The CBC backend (PuLP's bundled CBC, a child process).

CBC reports its dual bound only in its log ("Lower bound:" of the negated objective), so the log
is read back. An interrupt sends SIGINT to the CBC child: in branch and bound CBC stops as on
its time limit and writes its incumbent, which PuLP then reads. Before that (presolve, root cuts)
CBC can ignore SIGINT for tens of seconds, so a child still alive `KILL_AFTER_SECONDS` later is
killed: the solve then reports no MILP solution and no bound (the warm start stays the incumbent).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import tempfile
import time
import warnings
from pathlib import Path

import pulp

from formulations.exact.hindsight import HindsightModel
from solvers.exact.phase import Phase, stopped_status
from solvers.exact.milp import milp_phase, set_start, to_milp
from solvers.interrupt import StopToken
from solvers.result import Status


def solve_cbc(hm: HindsightModel, time_limit: float, start_values: list[int] | None, workers: int,
              stop: StopToken) -> Phase:
    built = to_milp(hm.model)
    warm = start_values is not None
    if warm:
        set_start(built, start_values)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "cbc.log"
        with warnings.catch_warnings():  # deprecated for PuLP 4; we pin pulp < 4, which bundles CBC
            warnings.simplefilter("ignore", DeprecationWarning)
            solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=0, gapAbs=0.5, threads=workers,
                                       warmStart=warm, logPath=str(log))
        try:
            stop.run(lambda: built.problem.solve(solver), _ChildInterrupter())
        except pulp.PulpSolverError:
            if not stop.requested:
                raise CbcFailed(f"CBC crashed (time limit {time_limit:g} s; the bundled CBC segfaults when its time "
                                "limit expires while it reads a MIP start): give it more time or use --backend highs") from None
            return Phase(stopped_status(stop), None, None)  # killed: nothing to read back
        text = log.read_text() if log.exists() else ""
    return milp_phase(built, hm, *_outcome(built.problem, text, stop), stop)


class CbcFailed(RuntimeError):
    """The CBC process died without a result (not a time limit, not an interrupt)."""


def _outcome(prob: pulp.LpProblem, log: str, stop: StopToken) -> tuple[Status, float | None]:
    if prob.status == pulp.LpStatusInfeasible or "Problem is infeasible" in log:
        return Status.INFEASIBLE, None
    stopped = stop.requested or "Stopped on time" in log or "time limit" in log.lower() or "ctrl-c" in log.lower()
    if prob.sol_status == pulp.LpSolutionOptimal and not stopped:
        return Status.OPTIMAL, None
    return (stopped_status(stop) if stopped else Status.FEASIBLE), _bound(log)


def _bound(log: str) -> float | None:
    """CBC's dual bound from its log: PuLP runs CBC with -max, and CBC then reports the bound of
    the maximization as "Upper bound:" (none in the log: no bound proven)."""
    upper = re.findall(r"Upper bound:\s*(-?[\d.eE+-]+)", log)
    return float(upper[-1]) if upper else None


KILL_AFTER_SECONDS = 1.0


class _ChildInterrupter:
    """SIGINT to each child process of this process (the CBC that PuLP started), SIGKILL to one
    still alive KILL_AFTER_SECONDS later. Called repeatedly while the stop is pending."""

    def __init__(self) -> None:
        self.interrupted_at: dict[int, float] = {}

    def __call__(self) -> None:
        now = time.monotonic()
        for pid in _child_pids():
            first = self.interrupted_at.setdefault(pid, now)
            if first == now or now - first > KILL_AFTER_SECONDS:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT if first == now else signal.SIGKILL)


def _child_pids() -> set[int]:
    """Linux: /proc/self/task/*/children lists the direct children of every thread."""
    pids: set[int] = set()
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            pids.update(int(p) for p in children.read_text().split())
        except OSError:
            continue
    return pids
