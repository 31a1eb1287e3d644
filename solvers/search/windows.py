"""Large-neighbourhood search that re-optimizes windows of a schedule exactly (CP-SAT).

Start: the best policy's run (its token times are the incumbent plan). Each move takes a window
of units in release order (solvers/search/window_model.py: the requests released in a time
range, the rest fixed with their incumbent KV, token and sequence use as constants), solves it
with CP-SAT warm-started from the incumbent, and turns the result into a whole plan: planned
token times for the free requests the window serves, the incumbent's times for everyone else,
and every request the plan does not serve given up (the window's dropped ones and the fixed
ones the incumbent missed, which only held resources). The caller's `evaluate` replays that plan
through the engine (a PlannedPolicy inside a GiveUpPolicy); the replayed schedule becomes the
incumbent when it meets at least as many SLOs, so the best-known never drops below the start.
Windows sweep the release order from a seeded random offset, overlapping by half.

solvers import no engine, so `evaluate` is passed in (experiments wires it to the simulator).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from formulations.bounds.intervals import attainment_units
from formulations.bounds.windows import token_windows
from formulations.instance import Instance
from formulations.metrics import DEFAULT_QOE_THRESHOLD
from formulations.schedule import Schedule
from solvers.interrupt import StopToken
from solvers.search.window_model import Window, solve_window, usage_profile

MAX_SLOTS = 20_000  # window model horizon cap (timed mode: slots of the mean iteration time)


@dataclass(frozen=True)
class Replayed:
    """A plan replayed through the engine: its schedule and which requests met their SLO."""

    schedule: Schedule
    met: np.ndarray  # bool per request


# (token times per request, given up) -> the replay, or None when the plan stalls the engine (no schedule)
Evaluate = Callable[[list[np.ndarray], np.ndarray], Replayed | None]


@dataclass
class WindowSearchResult:
    best: Replayed
    slo_met: int
    start: int  # slo_met of the warm start
    evaluations: int
    improvements: int
    seconds: float
    windows: list[dict] = field(default_factory=list)  # per move: free units, model and replayed weights


def window_search(instance: Instance, start: Replayed, evaluate: Evaluate, time_limit: float, seed: int,
                  window_units: int = 40, window_seconds: float = 5.0,
                  qoe_threshold: float = DEFAULT_QOE_THRESHOLD, workers: int = 2) -> WindowSearchResult:
    """Improve `start` within `time_limit` seconds (see the module docstring)."""
    t_start = time.perf_counter()
    unit, weight = attainment_units(instance)
    windows = token_windows(instance, qoe_threshold)
    release = np.array([w.release for w in windows])
    unit_release = np.full(len(weight), np.inf)
    np.minimum.at(unit_release, unit, release)
    order = np.argsort(unit_release, kind="stable")
    span = max(1, min(window_units, len(order)))
    stride = max(1, span // 2)
    rng = np.random.default_rng(seed)
    lo = int(rng.integers(0, max(1, len(order) - span + 1))) if len(order) > span else 0
    best = start
    best_met = _weight_met(best.met, unit, weight)
    evaluations = improvements = 0
    replay_seconds = 0.0
    log: list[dict] = []
    stop = StopToken()
    while True:
        left = time_limit - (time.perf_counter() - t_start)
        expected = replay_seconds / evaluations if evaluations else 0.0
        if left - expected < 0.5 or best_met == int(weight.sum()):
            break
        chosen = order[lo:lo + span]
        lo = lo + stride if lo + span < len(order) else 0
        free = np.flatnonzero(np.isin(unit, chosen))
        window = _window(instance, best.schedule, windows, free, release)
        fixed = np.setdiff1d(np.arange(len(unit)), free)
        unit_met = _unit_met(best.met, unit, len(weight))
        usage = usage_profile(instance, best.schedule, fixed[best.met[fixed]], window)
        plan = solve_window(instance, windows, unit, weight, best.schedule, unit_met, window, usage,
                            max(0.2, min(window_seconds, left - expected - 0.3)), stop, workers, qoe_threshold)
        entry = {"units": len(chosen), "requests": len(free), "slots": window.slots, "tau": window.tau,
                 "status": str(plan.status), "model": plan.met_weight, "incumbent": plan.hint_weight}
        log.append(entry)
        if not plan.token_times and not plan.met_weight and plan.hint_weight:
            continue  # no plan found in time
        times = [tl.token_times for tl in best.schedule.timelines]
        for i, planned in plan.token_times.items():
            times[i] = planned
        missed = np.flatnonzero(~best.met)
        given_up = np.union1d(np.setdiff1d(missed, free), plan.dropped)
        t0 = time.perf_counter()
        replayed = evaluate(times, given_up)
        replay_seconds += time.perf_counter() - t0
        evaluations += 1
        if replayed is None:  # the engine could not follow this plan: not a schedule, nothing to keep
            entry["replayed"] = "stalled"
            continue
        value = _weight_met(replayed.met, unit, weight)
        entry["replayed"] = value
        if value >= best_met:
            improvements += value > best_met
            best, best_met = replayed, value
    return WindowSearchResult(best, best_met, _weight_met(start.met, unit, weight), evaluations, improvements,
                              time.perf_counter() - t_start, log)


def _window(instance: Instance, schedule: Schedule, windows, free: np.ndarray, release: np.ndarray) -> Window:
    """The slot grid of a window: from its first release to the last latest time of its free
    requests (at most MAX_SLOTS slots: a later deadline is treated as the horizon's end), in slots of the engine's slot time, or (timed mode) of
    the incumbent's mean iteration time while it served them (distinct token delivery times =
    iterations that delivered)."""
    t0 = float(release[free].min())
    end = max(float(windows[i].latest[-1]) for i in free.tolist())
    tau = instance.engine.slot_time
    if tau is not None:
        t0 = math.floor(t0 / tau + 1e-9) * tau
    else:
        # over the span the incumbent served the free requests in (not the idle tail up to the
        # latest deadline, which would stretch the mean)
        busy = max([t0] + [float(schedule.timelines[i].token_times[-1]) for i in free.tolist()
                           if len(schedule.timelines[i].token_times)])
        delivered = np.unique(np.concatenate([tl.token_times for tl in schedule.timelines]))
        count = np.count_nonzero((delivered > t0) & (delivered <= busy))
        tau = (busy - t0) / count if count >= 10 else instance.engine.latency.c0
    slots = max(1, min(MAX_SLOTS, math.ceil((end - t0) / tau) + 1))
    return Window(t0, tau, slots, free)


def _unit_met(met: np.ndarray, unit: np.ndarray, units: int) -> np.ndarray:
    out = np.ones(units, dtype=bool)
    np.logical_and.at(out, unit, met)
    return out


def _weight_met(met: np.ndarray, unit: np.ndarray, weight: np.ndarray) -> int:
    """SLO-met count: a unit counts its weight when all its requests met (bulk: all or nothing)."""
    return int(weight[_unit_met(met, unit, len(weight))].sum())
