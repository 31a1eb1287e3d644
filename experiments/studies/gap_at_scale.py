"""The optimality gap at realistic scale (`slosched gap CONFIG.toml`), where no exact optimum exists.

For each load of a config: every policy is simulated (the config's predictor) and scored; the
best-known schedule starts from the best of those runs and of the best policies run with true
lengths (hindsight may use them), and the window search (solvers/search/windows.py) improves it
by re-optimizing windows of it with CP-SAT, each candidate plan replayed through the simulator
(PlannedPolicy inside GiveUpPolicy: the replayed score is the result); the upper bound is the
interval relaxation (solvers/bounds). Per policy the optimality gap then lies in

    [(best_known - policy) / best_known, (bound - policy) / bound].

A schedule scoring above the bound raises BoundViolated (the command exits non-zero): the bound
or the simulator would be wrong.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine_adapter.simulator import SimulationStalled, simulate
from experiments.config import ExperimentConfig
from experiments.runner import Cell, _predictor_params, build_cell_instance
from formulations.instance import Instance
from formulations.metrics import request_outcomes
from solvers.bounds.interval_lp import upper_bound
from formulations.online import Policy
from solvers.policies.give_up import GiveUpPolicy
from solvers.policies.planned import PlannedPolicy
from solvers.policies.registry import make_policy
from solvers.prediction.base import LengthPredictor
from solvers.prediction.oracle import OraclePredictor
from solvers.prediction.registry import make_predictor
from solvers.search.windows import Replayed, window_search


TRUE_LENGTH_RUNS = 2  # the best policies also run with true lengths as warm-start candidates


@dataclass(frozen=True)
class GapSettings:
    """Seconds for the bound and for the search, per load (the issue's target: <= 60 each)."""

    bound_seconds: float = 60.0
    search_seconds: float = 60.0
    seed: int = 0  # the search's random choices
    window_units: int = 40  # SLO units re-optimized together by one CP-SAT window
    window_seconds: float = 5.0  # CP-SAT time per window
    # timed mode: each plan is replayed twice, work-conserving and with requests pausing until
    # their next token is due within this many seconds; the better replay counts. Neither wins
    # everywhere: replaying slo's own token times at demo x4 meets 527 SLOs work-conserving (KV
    # thrash), 626 held, of 645; at x8 the work-conserving replays did better.
    timed_hold: float = 0.02


@dataclass
class LoadGap:
    rate_scale: float
    requests: int
    policies: dict[str, int]  # SLO-met count of each policy (config predictor)
    best_known: int
    best_source: str  # which run the best-known schedule came from
    bound: dict[str, Any]  # BoundResult.to_dict()
    search: dict[str, Any]  # start, evaluations, improvements, windows
    seconds: dict[str, float] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """Per policy: attainment, best-known, bound and the gap interval (shares of requests)."""
        n, best, bound = self.requests, self.best_known, self.bound["bound"]
        return [{"rate_scale": self.rate_scale, "policy": name, "attainment": met / n, "best_known": best / n,
                 "bound": bound / n, "gap_low": (best - met) / best if best else 0.0,
                 "gap_high": (bound - met) / bound if bound else 0.0}
                for name, met in self.policies.items()]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows": self.rows()}


def gap_at_load(config: ExperimentConfig, rate_scale: float, settings: GapSettings = GapSettings()) -> LoadGap:
    instance = build_cell_instance(Cell(config, config.policies[0], rate_scale, config.seed))
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    bound = upper_bound(instance, config.qoe_threshold, time_limit=settings.bound_seconds)
    seconds["bound"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    config_lengths = config.predictor.name
    runs = {(name, config_lengths): _run(config, instance, make_policy(name, **config.policy_params.get(name, {})),
                                         config_lengths) for name in config.policies}
    policies = {name: int(runs[(name, config_lengths)].met.sum()) for name in config.policies}
    if config_lengths != "oracle":
        for name in sorted(policies, key=policies.get)[-TRUE_LENGTH_RUNS:]:
            runs[(name, "oracle")] = _run(config, instance, make_policy(name, **config.policy_params.get(name, {})),
                                          "oracle")
    seconds["policies"] = time.perf_counter() - t0
    (best_name, best_lengths), start = max(runs.items(), key=lambda kv: int(kv[1].met.sum()))

    def replay_plan(token_times: list[np.ndarray], given_up: np.ndarray) -> Replayed | None:
        """The better replay of the plan (timed mode: with and without a hold); None when every
        replay stalls the engine (a plan pausing residents while the gate holds its next request)."""
        holds = (instance.engine.slot_time,) if instance.engine.slot_time is not None else (settings.timed_hold, None)
        replays = []
        for hold in holds:
            try:
                replays.append(_run(config, instance, GiveUpPolicy(PlannedPolicy(token_times, hold), given_up), "oracle"))
            except SimulationStalled:
                continue
        return max(replays, key=lambda run: int(run.met.sum()), default=None)

    found = window_search(instance, start, replay_plan, settings.search_seconds, settings.seed,
                          settings.window_units, settings.window_seconds, config.qoe_threshold)
    seconds["search"] = found.seconds
    source = f"{best_name} ({best_lengths} lengths)" + (f", {found.improvements} windows re-optimized"
                                                        if found.improvements else "")
    gap = LoadGap(rate_scale, len(instance.requests), policies, found.slo_met, source, bound.to_dict(),
                  {"start": found.start, "evaluations": found.evaluations, "improvements": found.improvements,
                   "windows": found.windows}, seconds)
    for (name, lengths), run in runs.items():
        bound.check(int(run.met.sum()), f"{config.name} x{rate_scale:g} {name} ({lengths} lengths)")
    bound.check(found.slo_met, f"{config.name} x{rate_scale:g} best-known")
    return gap


def _run(config: ExperimentConfig, instance: Instance, policy: Policy, lengths: str) -> Replayed:
    """Simulate `policy` seeing `lengths` ("oracle": the true ones, else the config's predictor)."""
    predictor: LengthPredictor = OraclePredictor() if lengths == "oracle" else make_predictor(
        lengths, **_predictor_params(config, config.seed))
    schedule = simulate(instance, policy, predictor)
    outcomes = request_outcomes(instance, schedule, config.qoe_threshold)
    return Replayed(schedule, np.array([o.slo_met for o in outcomes], dtype=bool))


def gap_study(config: ExperimentConfig, rate_scales: list[float], settings: GapSettings = GapSettings(),
              progress=print) -> list[LoadGap]:
    out = []
    for rate in rate_scales:
        out.append(gap_at_load(config, rate, settings))
        g = out[-1]
        progress(f"x{rate:g}: best-known {g.best_known}/{g.requests}, bound {g.bound['bound']} "
                 f"(bound {g.seconds['bound']:.1f} s, search {g.seconds['search']:.1f} s)")
    return out
