"""Large-neighbourhood search over which SLO units a policy gives up on.

Under overload a policy loses SLOs by spending the engine on requests that miss anyway. Starting
from the best policy's own run (nothing given up), the search tries neighbours of the current
given-up set, each replayed through the engine by the caller's `evaluate` (the replayed score is
the result, so every candidate is a real engine schedule), and keeps a neighbour only when it
meets strictly more SLOs. Neighbourhoods, each around a random window of units in release
order, so one move changes one stretch of the schedule:

- give up the units that missed in the window (they held KV and iterations for nothing);
- retry half of the given-up units in the window (the engine may have room for them now);
- give up every missed unit (tried first: the cheapest large step).

solvers import no engine, so `evaluate` is passed in (experiments wires it to the simulator).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Outcome:
    """A replayed candidate: SLO-met count (bulk groups weigh their size) and met flag per unit."""

    slo_met: int
    met: np.ndarray  # bool per unit


Evaluate = Callable[[np.ndarray], Outcome]  # given-up unit indices -> replayed outcome


@dataclass
class SearchResult:
    given_up: np.ndarray  # unit indices of the best schedule found
    best: Outcome
    start: int  # slo_met of the warm start
    evaluations: int
    improvements: int
    seconds: float


def search(evaluate: Evaluate, start: Outcome, unit_release: np.ndarray, time_limit: float, seed: int,
           window: float = 0.1) -> SearchResult:
    """Improve on `start` (the warm start's outcome, nothing given up) within `time_limit` s.
    `unit_release`: each unit's release time (windows are spans of this order); `window`: the
    share of units in one window."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    order = np.argsort(unit_release, kind="stable")
    span = max(1, int(len(order) * window))
    given = np.zeros(len(unit_release), dtype=bool)
    best = start
    evaluations = improvements = 0
    first = True
    spent = 0.0  # seconds in evaluate so far: no replay starts that would likely end past the limit
    while time.perf_counter() - t0 + (spent / evaluations if evaluations else 0.0) < time_limit:
        candidate = given.copy()
        missed = ~best.met & ~given
        if not missed.any() and not given.any():
            break  # every unit met: nothing to improve
        if first:
            candidate |= missed
            first = False
        else:
            lo = int(rng.integers(0, max(1, len(order) - span + 1)))
            in_window = np.zeros_like(given)
            in_window[order[lo:lo + span]] = True
            if rng.random() < 0.6:
                candidate |= missed & in_window
            else:
                retry = np.flatnonzero(given & in_window)
                candidate[rng.permutation(retry)[: (len(retry) + 1) // 2]] = False
        if np.array_equal(candidate, given):
            continue
        t_eval = time.perf_counter()
        outcome = evaluate(np.flatnonzero(candidate))
        spent += time.perf_counter() - t_eval
        evaluations += 1
        if outcome.slo_met > best.slo_met:
            best, given = outcome, candidate
            improvements += 1
    return SearchResult(np.flatnonzero(given), best, start.slo_met, evaluations, improvements,
                        time.perf_counter() - t0)
