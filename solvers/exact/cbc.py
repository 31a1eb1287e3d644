"""The CBC backend (PuLP's bundled CBC, a child process).

CBC reports its dual bound only in its log ("Lower bound:" of the negated objective), so the log
is read back. An interrupt sends SIGINT to the CBC child: CBC stops as on its time limit and
writes its incumbent, which PuLP then reads.
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import warnings
from pathlib import Path

import pulp

from formulations.exact.hindsight import HindsightModel
from solvers.exact.phase import Phase, stopped_status
from solvers.exact.milp import set_start, solution_values, to_milp
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
        stop.run(lambda: built.problem.solve(solver), _ChildInterrupter())
        text = log.read_text() if log.exists() else ""
    status, bound = _outcome(built.problem, text, stop)
    if status == Status.INFEASIBLE:
        return Phase(status, None, None)
    values = solution_values(built, hm)
    if status == Status.OPTIMAL and values is None:
        status = stopped_status(stop)
    return Phase(status, values, bound)


def _outcome(prob: pulp.LpProblem, log: str, stop: StopToken) -> tuple[Status, float | None]:
    if prob.status == pulp.LpStatusInfeasible or "Problem is infeasible" in log:
        return Status.INFEASIBLE, None
    stopped = stop.requested or "Stopped on time" in log or "time limit" in log.lower() or "ctrl-c" in log.lower()
    bound = None
    match = re.search(r"Lower bound:\s*(-?[\d.eE+-]+)", log)
    if match:
        bound = -float(match.group(1))  # CBC minimizes the negated objective
    if prob.sol_status == pulp.LpSolutionOptimal and not stopped:
        return Status.OPTIMAL, pulp.value(prob.objective)
    return (stopped_status(stop) if stopped else Status.FEASIBLE), bound


class _ChildInterrupter:
    """Sends SIGINT once to each child process of this process (the CBC that PuLP started)."""

    def __init__(self) -> None:
        self.sent: set[int] = set()

    def __call__(self) -> None:
        for pid in _child_pids() - self.sent:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                continue
            self.sent.add(pid)


def _child_pids() -> set[int]:
    """Linux: /proc/self/task/*/children lists the direct children of every thread."""
    pids: set[int] = set()
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            pids.update(int(p) for p in children.read_text().split())
        except OSError:
            continue
    return pids
