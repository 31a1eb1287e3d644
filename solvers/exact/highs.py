"""The HiGHS backend (in-process through highspy), with a MIP start and a cancellable run."""

from __future__ import annotations

import contextlib
import math
import os
import sys

import pulp

from formulations.exact.hindsight import HindsightModel
from solvers.exact.milp import milp_phase, set_start, to_milp
from solvers.exact.phase import Phase, stopped_status
from solvers.interrupt import StopToken
from solvers.result import Status


def solve_highs(hm: HindsightModel, time_limit: float, start_values: list[int] | None, workers: int,
                stop: StopToken) -> Phase:
    built = to_milp(hm.model)
    if start_values is not None:
        set_start(built, start_values)
    solver = _Highs(msg=False, timeLimit=time_limit, gapRel=0, gapAbs=0.5, threads=workers, start=start_values)
    with quiet_stdout():  # HiGHS prints its banner from C++ even with output off
        stop.run(lambda: built.problem.solve(solver), solver.cancel)
    return milp_phase(built, hm, *_outcome(built.problem, stop), stop)


def _outcome(prob: pulp.LpProblem, stop: StopToken) -> tuple[Status, float | None]:
    import highspy

    h = prob.solverModel
    model_status = h.getModelStatus()
    info = h.getInfo()
    bound = -info.mip_dual_bound if math.isfinite(info.mip_dual_bound) else None  # HiGHS minimizes the negation
    if model_status == highspy.HighsModelStatus.kInfeasible:
        return Status.INFEASIBLE, None
    if model_status == highspy.HighsModelStatus.kOptimal:
        return Status.OPTIMAL, bound
    if model_status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt):
        return stopped_status(stop), bound
    return Status.FEASIBLE, bound


@contextlib.contextmanager
def quiet_stdout():
    """Silence file descriptor 1 for the block: HiGHS prints its banner from C++ straight to the
    process's stdout, even with output turned off, where redirecting Python's `sys.stdout` does
    not reach. Public: the HiGHS bound solvers (solvers/bounds/) wrap their HiGHS calls in it too."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class _Highs(pulp.HiGHS):
    """PuLP's HiGHS with a MIP start (PuLP's highspy binding does not pass one) and `cancel`."""

    def __init__(self, start: list[int] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start = start
        self.model = None

    def cancel(self) -> None:
        if self.model is not None:
            self.model.cancelSolve()

    def callSolver(self, lp: pulp.LpProblem) -> None:
        if self.start is not None:
            order = {v.name: k for k, v in enumerate(lp.variables())}
            values = [0.0] * len(order)
            for var in lp.variables():
                values[order[var.name]] = float(var.varValue if var.varValue is not None else 0)
            import highspy

            sol = highspy.HighsSolution()
            sol.col_value = values
            sol.value_valid = True
            lp.solverModel.setSolution(sol)
        lp.solverModel.HandleUserInterrupt = True
        self.model = lp.solverModel
        lp.solverModel.run()
