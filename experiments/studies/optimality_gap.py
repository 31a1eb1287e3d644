"""The optimality-gap study behind `slosched compare`.

N seeded random small instances in slotted mode (mixed classes, DAG groups, loads from light to
overloaded) are run through every registered policy in the simulator and solved exactly in
hindsight by the oracle; each policy's SLO attainment is compared to the optimum. The study also
measures, on the batch-selection problems `slo` meets at every step of those runs, how far the
greedy 2-D knapsack is from the exact per-step optimum.

A policy beating the hindsight optimum would mean the oracle or the simulator is wrong, so it
raises `OptimumExceeded` naming the instance and policy (the command exits non-zero).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.metrics import score
from formulations.online import EngineView, Plan, Policy
from formulations.requests import Group, Request, RequestClass

SLOT = 0.1  # seconds per slot; reading paces below are whole multiples of it
READ_RATES = (2.5, 5.0, 10.0)  # tokens/s: one token per 4, 2, 1 slots


@dataclass(frozen=True)
class InstanceSpec:
    """Shape of the random instances (small enough for the exact oracle)."""

    min_requests: int = 5
    max_requests: int = 9
    kv_blocks: int = 16
    block_size: int = 4
    token_budget: int = 24
    max_seqs: int = 3
    prompt: tuple[int, int] = (3, 20)
    output: tuple[int, int] = (2, 10)
    load: tuple[float, float] = (0.4, 3.0)  # offered work / engine capacity over the arrival window
    slack: tuple[float, float] = (1.2, 4.0)  # throughput and bulk slack ratios


def random_instance(seed: int, spec: InstanceSpec = InstanceSpec()) -> Instance:
    """One seeded instance: latency, throughput and bulk (DAG) requests at a random load."""
    rng = np.random.default_rng([seed, 7])
    engine = EngineSpec.from_profile("llama3-8b-h100", kv_blocks=spec.kv_blocks, block_size=spec.block_size,
                                     token_budget=spec.token_budget, max_seqs=spec.max_seqs, slot_time=SLOT)
    n = int(rng.integers(spec.min_requests, spec.max_requests + 1))
    prompts = rng.integers(spec.prompt[0], spec.prompt[1] + 1, n)
    outputs = rng.integers(spec.output[0], spec.output[1] + 1, n)
    work = float((outputs + 1).sum())  # slots of one sequence each request needs
    load = float(rng.uniform(*spec.load))
    window = work / (spec.max_seqs * load) * SLOT
    arrivals = np.sort(np.round(rng.uniform(0.0, window, n) / SLOT) * SLOT)
    kinds = rng.choice(["latency", "throughput", "bulk"], size=n, p=[0.4, 0.35, 0.25])
    requests: list[Request] = []
    groups: list[Group] = []
    k = 0
    while k < n:
        if kinds[k] == "bulk" and k + 1 < n:
            size = int(min(rng.integers(2, 4), n - k))
            members = [f"r{k + j}" for j in range(size)]
            shape = rng.choice(["chain", "fan-out", "independent"])
            if shape == "chain":
                edges = tuple((members[j], members[j + 1]) for j in range(size - 1))
            elif shape == "fan-out":
                edges = tuple((members[0], m) for m in members[1:])
            else:
                edges = ()
            gid = f"g{len(groups)}"
            groups.append(Group(id=gid, members=tuple(members), arrival=float(arrivals[k]),
                                slack_ratio=float(rng.uniform(*spec.slack)), edges=edges))
            for j in range(size):
                requests.append(Request(id=members[j], cls=RequestClass.BULK, arrival=float(arrivals[k]),
                                        prompt_len=int(prompts[k + j]), output_len=int(outputs[k + j]), group=gid))
            k += size
            continue
        if kinds[k] == "latency":
            requests.append(Request(id=f"r{k}", cls=RequestClass.LATENCY, arrival=float(arrivals[k]),
                                    prompt_len=int(prompts[k]), output_len=int(outputs[k]),
                                    ttft_target=float(rng.choice([0.2, 0.3, 0.5])),
                                    read_rate=float(rng.choice(READ_RATES))))
        else:
            requests.append(Request(id=f"r{k}", cls=RequestClass.THROUGHPUT, arrival=float(arrivals[k]),
                                    prompt_len=int(prompts[k]), output_len=int(outputs[k]),
                                    slack_ratio=float(rng.uniform(*spec.slack))))
        k += 1
    return Instance(engine, tuple(requests), tuple(groups), meta={"seed": seed, "load": round(load, 3),
                                                                   "generator": "gap_study"})


class OptimumExceeded(RuntimeError):
    """A policy scored above the hindsight optimum: a bug in the oracle or the simulator."""


@dataclass
class InstanceResult:
    seed: int
    load: float
    requests: int
    optimum: int  # requests meeting their SLO in the optimal schedule
    optimal_qoe: float | None
    proven: bool
    met: dict[str, int] = field(default_factory=dict)
    qoe: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicySummary:
    mean_ratio: float
    min_ratio: float
    max_ratio: float
    optimal_share: float
    mean_qoe_ratio: float | None
    mean_bound_ratio: float | None = None  # over every instance, proven or not: met / oracle bound

    def to_dict(self) -> dict[str, float | None]:
        return dict(mean_ratio=self.mean_ratio, min_ratio=self.min_ratio, max_ratio=self.max_ratio,
                    optimal_share=self.optimal_share, mean_qoe_ratio=self.mean_qoe_ratio,
                    mean_bound_ratio=self.mean_bound_ratio)


def attainment_ratio(met: int, optimum: int) -> float:
    """met / optimum; an optimum of 0 is met exactly by 0 (ratio 1)."""
    if optimum == 0:
        return 1.0 if met == 0 else float("inf")
    return met / optimum


def check_against_optimum(result: InstanceResult) -> None:
    for name, met in result.met.items():
        if met > result.optimum:
            raise OptimumExceeded(
                f"instance seed={result.seed}: policy {name!r} meets {met} SLOs, above the hindsight optimum "
                f"{result.optimum}: the oracle or the simulator is wrong"
            )


def summarize(results: list[InstanceResult], policy: str,
              bounded: list[tuple[dict[str, int], int]] | None = None) -> PolicySummary:
    """Ratios over the proven instances; with `bounded` ((met per policy, proven upper bound) for
    every instance), also the mean ratio to the bound, a lower bound of the ratio to the optimum
    that counts the instances the oracle could not prove too."""
    ratios = np.array([attainment_ratio(r.met[policy], r.optimum) for r in results])
    qoe_ratios = [r.qoe[policy] / r.optimal_qoe for r in results
                  if r.qoe.get(policy) is not None and r.optimal_qoe]
    return PolicySummary(
        mean_ratio=float(ratios.mean()), min_ratio=float(ratios.min()), max_ratio=float(ratios.max()),
        optimal_share=float(np.mean([r.met[policy] == r.optimum for r in results])),
        mean_qoe_ratio=float(np.mean(qoe_ratios)) if qoe_ratios else None,
        mean_bound_ratio=float(np.mean([attainment_ratio(met[policy], bound) for met, bound in bounded]))
        if bounded else None,
    )


# ---- per-step knapsack gap ------------------------------------------------------------------------
class RecordingPolicy(Policy):
    """Runs `inner` unchanged and keeps every view it was shown (for the per-step study)."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name = inner.name
        self.views: list[EngineView] = []

    def reset(self, engine: EngineSpec) -> None:
        self.inner.reset(engine)
        self.views = []

    def decide(self, view: EngineView) -> Plan:
        # engine views alias live engine state: keep a deep copy
        copied = {f.name: getattr(view, f.name).copy() for f in fields(view)
                  if isinstance(getattr(view, f.name), np.ndarray)}
        groups = [replace(g, done=g.done.copy()) for g in view.groups]
        self.views.append(replace(view, groups=groups, **copied))
        return self.inner.decide(view)


@dataclass
class StepGap:
    steps: int = 0  # selection problems where not every candidate fits
    greedy_optimal: int = 0
    gaps: list[float] = field(default_factory=list)  # 1 - greedy / exact, per step

    def to_dict(self) -> dict[str, float | int | None]:
        gaps = np.array(self.gaps) if self.gaps else np.zeros(0)
        return dict(steps=self.steps, mean_gap=float(gaps.mean()) if len(gaps) else None,
                    max_gap=float(gaps.max()) if len(gaps) else None,
                    optimal_share=self.greedy_optimal / self.steps if self.steps else None)


def step_gaps(slo_policy, views: list[EngineView], exact: Callable, into: StepGap) -> None:
    """Greedy (best of the density and value orders) vs exact on each contended step's 2-D
    knapsack of `slo`."""
    from solvers.knapsack.greedy import best_of_greedy

    for view in views:
        step = slo_policy.knapsack_inputs(view)
        items = step.order
        if len(items) == 0:
            continue
        values, weights = step.values[items], step.weights[items]
        if len(items) <= step.max_items and np.all(weights.sum(axis=0) <= step.capacities):
            continue  # everything fits: both take all
        greedy = float(values[best_of_greedy(values, weights, step.capacities, max_items=step.max_items)].sum())
        best = exact(values, weights, step.capacities, step.max_items)
        into.steps += 1
        gap = 0.0 if best <= 0 else max(0.0, 1.0 - greedy / best)
        into.gaps.append(gap)
        into.greedy_optimal += gap <= 1e-9


# ---- the study ------------------------------------------------------------------------------------
@dataclass
class StudyReport:
    instances: list[InstanceResult]
    policies: dict[str, PolicySummary]
    step_knapsack: StepGap
    unproven: int  # instances where the oracle stopped before proving optimality (left out of ratios)
    interrupted_by: str | None = None  # the signal that ended the study early (the instances done are reported)

    def to_dict(self) -> dict:
        return {"policies": {k: v.to_dict() for k, v in self.policies.items()},
                "step_knapsack": self.step_knapsack.to_dict(), "instances": len(self.instances),
                "unproven": self.unproven, "interrupted_by": self.interrupted_by}


def run_study(n: int, seed: int = 0, *, policies: list[str] | None = None, time_limit: float = 60.0,
              noise: float = 0.0, spec: InstanceSpec = InstanceSpec(),
              progress: Callable[[int], None] | None = None) -> StudyReport:
    """Simulate every policy and solve every instance exactly; raise `OptimumExceeded` on a bug.

    SIGINT/SIGTERM end the study after the instance in progress (its solve stops at once and
    counts as unproven); the report covers the instances done and names the signal.
    Policies see the oracle predictor's lengths, or with `noise` > 0 a log-normal noisy estimate
    (sigma = noise); the hindsight optimum always knows the true lengths.
    """
    from engine_adapter.simulator import simulate
    from formulations.exact.knapsack import KnapsackProblem
    from solvers.exact.solve import solve
    from solvers.interrupt import interruptible
    from solvers.knapsack.dp import dp_size, solve_dp
    from solvers.knapsack.cpsat import solve_cpsat
    from solvers.policies.registry import POLICIES, make_policy
    from solvers.prediction.oracle import NoisyOraclePredictor, OraclePredictor

    def exact_step(values, weights, caps, max_items) -> float:
        problem = KnapsackProblem(values, weights.astype(np.int64), caps.astype(np.int64), max_items=max_items)
        result = solve_dp(problem) if dp_size(problem) <= 200_000 else solve_cpsat(problem)
        return float(result.value)

    names = policies or list(POLICIES)
    results: list[InstanceResult] = []
    steps = StepGap()
    unproven = 0
    bounded: list[tuple[dict[str, int], int]] = []
    with interruptible() as stop:
        for k in range(n):
            instance = random_instance(seed * 100_003 + k, spec)
            met: dict[str, int] = {}
            qoes: dict[str, float | None] = {}
            hint, hint_met = None, -1
            for name in names:
                policy = make_policy(name)
                recorder = RecordingPolicy(policy) if name == "slo" else policy
                predictor = NoisyOraclePredictor(noise, seed=k) if noise > 0 else OraclePredictor()
                schedule = simulate(instance, recorder, predictor, record_iterations=True)
                metrics = score(instance, schedule)
                met[name], qoes[name] = metrics.slo_met, metrics.mean_qoe
                if metrics.slo_met > hint_met:
                    hint, hint_met = schedule, metrics.slo_met
                if name == "slo":
                    step_gaps(policy, recorder.views, exact_step, steps)
            result = solve(instance, time_limit=time_limit, hint=hint)
            bounded.append((met, int(result.bound)))
            if result.status != "optimal" or result.schedule is None:
                unproven += 1
            else:
                optimal_metrics = score(instance, result.schedule)
                if optimal_metrics.slo_met != result.objective:
                    raise OptimumExceeded(f"instance seed={instance.meta['seed']}: the oracle's schedule scores "
                                          f"{optimal_metrics.slo_met}, its objective says {result.objective}")
                entry = InstanceResult(seed=instance.meta["seed"], load=instance.meta["load"],
                                       requests=len(instance.requests), optimum=int(result.objective),
                                       optimal_qoe=optimal_metrics.mean_qoe, proven=True, met=met, qoe=qoes)
                check_against_optimum(entry)
                results.append(entry)
            if progress is not None:
                progress(k + 1)
            if stop.requested:
                break
    if not results:
        why = f"interrupted by {stop.signal_name}" if stop.requested else f"within {time_limit} s"
        raise RuntimeError(f"the oracle proved none of the {n} instances optimal ({why})")
    return StudyReport(results, {name: summarize(results, name, bounded) for name in names}, steps, unproven,
                       stop.signal_name if stop.requested else None)
