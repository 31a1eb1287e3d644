"""Online evaluation: run a workload through a real vLLM engine, then put the result next to the
simulator's replay of the same workload and the hindsight optimum.

For each policy of an experiment config (plus a `[vllm]` table, `ServeSettings`):
1. build the workload, calibrate the engine's latency model on a few plain requests run under the
   policy (wall-clock mode; a slotted run needs none: a step's time includes the policy's own, so
   each policy has its model) so deadlines (slack x T_alone) mean something on this engine, realize the workload on it
   (arrivals x time_scale) and replay it through vLLM with the policy: the *online* attainment;
2. replay the identical workload in the simulator with the engine as calibrated in step 1 (a
   different run: the calibration requests, not this workload; deadlines kept): the *simulated*
   attainment, and the simulator's *timed fidelity* on a workload its latency model never saw
   (per-request TTFT, TBT and JCT relative errors, median and p90: engine_adapter/fidelity.py).
   The latency model fitted to the run's own steps is reported next to it (how well the model's
   form explains this run);
3. solve the realized instance with the exact oracle (slotted runs as they are, with the run as
   warm start; wall-clock runs as a slotted approximation with tau = the run's mean step time)
   when it has at most `oracle_max_requests` requests and the run at most
   `oracle_max_iterations` iterations: the *online optimality gap* = 1 - online / optimum (with a
   time-out, the proven bound gives the gap's upper end); beyond those limits, the attainment
   upper bound of solvers/bounds on the run's fitted engine gives the gap's upper end.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from engine_adapter.bridge_config import BridgeConfig
from engine_adapter.fidelity import timed_fidelity
from engine_adapter.latency_fit import LatencyFit, fit_latency, with_step_gap
from engine_adapter.realized import realize, with_engine
from engine_adapter.simulator import simulate
from experiments.config import ExperimentConfig
from experiments.errors import ConfigError
from experiments.runner import _predictor_params
from experiments.workloads import build_instance
from formulations.instance import Instance
from formulations.metrics import request_outcomes, score, summarize
from formulations.schedule import Schedule
from solvers.bounds.interval_lp import upper_bound
from solvers.policies.registry import make_policy
from solvers.prediction.registry import make_predictor


@dataclass(frozen=True)
class ServeSettings:
    """The `[vllm]` table: the engine and how the workload is replayed on it."""

    model: str = ""  # a local Hugging Face model directory; "" = the tiny random-weight Llama
    kv_blocks: int = 64
    block_size: int = 32
    max_num_seqs: int = 16
    max_num_batched_tokens: int = 256
    max_model_len: int = 1024
    dtype: str = "float32"
    time_scale: float = 1.0  # run seconds per workload second (< 1 compresses: more load)
    slot_time: float = 0.0  # > 0: iteration-count clock (iteration k at k * slot_time)
    calibration_requests: int = 32
    oracle_max_requests: int = 40
    oracle_max_iterations: int = 400  # the exact model grows with requests x iterations
    oracle_time_limit: float = 60.0

    def __post_init__(self) -> None:
        for name in ("kv_blocks", "block_size", "max_num_seqs", "max_num_batched_tokens", "max_model_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[vllm] {name}={getattr(self, name)} must be >= 1")
        if self.block_size % 32:
            raise ConfigError(f"[vllm] block_size={self.block_size}: vLLM's CPU attention needs a multiple of 32")
        if not self.time_scale > 0 or self.slot_time < 0:
            raise ConfigError(f"[vllm] time_scale={self.time_scale} must be > 0 and slot_time={self.slot_time} >= 0")


@dataclass
class PolicyResult:
    policy: str
    online: dict[str, Any]  # Metrics of the vLLM run
    simulated: dict[str, Any]  # Metrics of the simulator replay (fitted engine)
    oracle: dict[str, Any] | None  # SolveResult.to_dict() + "attainment", or why not
    fit: dict[str, Any]  # latency model fitted to this run (the simulator uses the calibration's)
    run: dict[str, Any]  # steps, wall seconds, preemptions, plan deviations, policy share of step time
    fidelity: dict[str, Any] = field(default_factory=dict)  # simulated vs online per-request times
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gap(self) -> float | None:
        """1 - online / optimum; where the oracle was out of reach, 1 - online / upper bound (the
        gap's upper end)."""
        oracle = self.oracle or {}
        best = oracle.get("attainment")
        if best is None:
            best = (oracle.get("upper_bound") or {}).get("attainment")
        if best is None:
            return None
        return 1.0 - self.online["attainment"] / best if best > 0 else 0.0


def build_workload(config: ExperimentConfig, serve: ServeSettings) -> Instance:
    """The config's workload with request lengths fitted to the vLLM engine's max_model_len."""
    per_request = config.engine.build().with_(kv_blocks=(serve.max_model_len - 1) // serve.block_size,
                                             block_size=serve.block_size)
    return build_instance(config.workload, per_request, config.seed)


def calibrate(engine, requests: int, seed: int, bridge: BridgeConfig | None = None) -> LatencyFit:
    """Latency model of this engine from waves of plain requests of varied sizes, run under
    `bridge` (default: fcfs). A step's time includes the scheduler's own (the policy's decide()
    and the bridge), so a policy is calibrated under itself: a model fitted under fcfs leaves
    out what a costlier policy adds to every step."""
    engine.configure(bridge or BridgeConfig(policy="fcfs"))
    rng = np.random.default_rng(seed)
    s = engine.settings
    waves = [w for w in (1, 2, 4, 8, 16, 32) if w <= s.max_num_seqs] or [1]
    k = 0
    while k < requests:
        for _ in range(min(waves[k % len(waves)], requests - k)):
            out = int(rng.integers(8, 48))
            prompt = int(rng.integers(8, max(9, min(s.max_model_len - out, 4 * s.max_num_batched_tokens))))
            engine.submit(f"calibrate-{k}", prompt, out)
            k += 1
        engine.drain()
    log = engine.scheduler.log.arrays()
    fit = fit_latency(log, name="vllm-calibration", source="fitted to calibration steps of this engine, plus the "
                      "median gap between steps")
    return with_step_gap(fit, log)


def coefficients(fit: LatencyFit) -> dict[str, float]:
    """The fitted latency coefficients as a BridgeConfig's `latency` takes them."""
    return {k: v for k, v in asdict(fit.model).items() if k.startswith("c")}


def vllm_settings(config: ExperimentConfig, serve: ServeSettings):
    """The in-process vLLM engine's settings for this config's [vllm] table."""
    from engine_adapter.vllm_runner import VllmSettings

    return VllmSettings(model=serve.model or None, kv_blocks=serve.kv_blocks, block_size=serve.block_size,
                        max_num_seqs=serve.max_num_seqs, max_num_batched_tokens=serve.max_num_batched_tokens,
                        max_model_len=serve.max_model_len, dtype=serve.dtype, seed=config.seed)


def serve_eval(config: ExperimentConfig, serve: ServeSettings, progress=print) -> list[PolicyResult]:
    from engine_adapter.vllm_runner import VllmEngine, replay

    base = build_workload(config, serve)
    slot = serve.slot_time or None
    engine = VllmEngine(vllm_settings(config, serve), BridgeConfig(policy="fcfs"))
    progress(f"vLLM engine ready in {engine.start_seconds:.1f} s; {len(base.requests)} requests")
    predictor_params = _predictor_params(config, config.seed)
    results = []
    for name in config.policies:
        params = config.policy_kwargs(name)
        bridge = BridgeConfig(policy=name, params=params, predictor=config.predictor.name,
                              predictor_params=predictor_params, slot_time=slot, latency=config.engine.profile)
        calibration = None
        if slot is None:  # (slotted: iteration times are slot_time)
            calibration = calibrate(engine, serve.calibration_requests, config.seed, bridge)
            progress(f"{name}: calibrated latency model on {calibration.steps} steps (R^2 {calibration.r2:.3f})")
            bridge = replace(bridge, latency=coefficients(calibration))
        engine.configure(bridge)
        instance = realize(base, engine.spec, serve.time_scale)
        predictor = make_predictor(config.predictor.name, **predictor_params)
        run = replay(engine, instance, predictor)
        results.append(_evaluate(name, params, config, serve, instance, run.schedule, predictor_params))
        if calibration is not None:
            results[-1].fit["calibration"] = {"steps": calibration.steps, "r2": calibration.r2,
                                              "median_rel_error": calibration.median_rel_error,
                                              **coefficients(calibration)}
        progress(f"{name}: online {results[-1].online['attainment']:.3f}, "
                 f"simulated {results[-1].simulated['attainment']:.3f}")
    return results


def _evaluate(name: str, params: dict, config: ExperimentConfig, serve: ServeSettings, instance: Instance,
              schedule: Schedule, predictor_params: dict) -> PolicyResult:
    log = schedule.meta["iteration_log"]
    outcomes = request_outcomes(instance, schedule, config.qoe_threshold)
    online = summarize(outcomes, config.qoe_threshold)
    if instance.engine.slot_time is None:
        # the engine as calibrated on other requests is instance.engine (its latency model)
        fit = fit_latency(log, name="vllm-run", source="fitted to this run's steps")
        fit_info = {**asdict(fit.model), "r2": fit.r2, "median_rel_error": fit.median_rel_error, "steps": fit.steps}
    else:
        fit_info = {"slot_time": instance.engine.slot_time}
    sim_schedule = simulate(instance, make_policy(name, **params),
                            make_predictor(config.predictor.name, **predictor_params))
    simulated = score(instance, sim_schedule, config.qoe_threshold)
    step = log["step_seconds"]
    run_info = {"steps": int(schedule.iterations), "wall_seconds": schedule.meta["wall_seconds"],
                "preemptions": online.preemptions, "plan_deviations": schedule.meta["plan_deviations"],
                "engine_preemptions": schedule.meta["engine_preemptions"],
                "policy_share_of_step": float(log["policy_seconds"].sum() / step.sum()) if len(step) else 0.0,
                "mean_step_seconds": float(step.mean()) if len(step) else 0.0}
    oracle = _oracle(instance, schedule, run_info["mean_step_seconds"], serve, config)
    if "skipped" in oracle:
        oracle["upper_bound"] = _upper_bound(instance, simulated.slo_met, serve, config)
    return PolicyResult(name, online.to_dict(), simulated.to_dict(), oracle, fit_info, run_info,
                        timed_fidelity(instance, schedule, sim_schedule), [o.to_dict() for o in outcomes])


def _oracle(instance: Instance, schedule: Schedule, mean_step: float, serve: ServeSettings,
            config: ExperimentConfig) -> dict[str, Any]:
    """The exact optimum; a slotted run's own schedule is its warm start (so the optimum found is
    never below the online attainment)."""
    n = len(instance.requests)
    if n > serve.oracle_max_requests:
        return {"skipped": f"{n} requests > oracle_max_requests={serve.oracle_max_requests}"}
    if schedule.iterations > serve.oracle_max_iterations:
        return {"skipped": f"{schedule.iterations} iterations > oracle_max_iterations={serve.oracle_max_iterations}"}
    try:
        from solvers.exact.solve import solve
    except ImportError as err:
        return {"skipped": f"the exact oracle is not installed ({err})"}
    slotted, hint = instance, schedule
    if instance.engine.slot_time is None:
        slotted, hint = with_engine(instance, instance.engine.with_(slot_time=mean_step)), None
    started = time.perf_counter()
    result = solve(slotted, time_limit=serve.oracle_time_limit, hint=hint, qoe_threshold=config.qoe_threshold)
    out = result.to_dict()
    out["attainment"] = None if result.objective is None else result.objective / n
    out["bound_attainment"] = result.bound / n
    out["approximation"] = None if instance.engine.slot_time is not None else f"slotted, tau={mean_step:.6f} s"
    out["wall_seconds"] = time.perf_counter() - started
    return out


def _upper_bound(instance: Instance, simulated_met: int, serve: ServeSettings, config: ExperimentConfig) -> dict:
    """The attainment upper bound (solvers/bounds) on the engine model the simulated replay uses
    (calibrated on earlier requests); that replay must stay below it (BoundViolated otherwise).
    The vLLM run itself is not held to it: its step times only approximately follow the model."""
    started = time.perf_counter()
    bound = upper_bound(instance, config.qoe_threshold, time_limit=serve.oracle_time_limit)
    bound.check(simulated_met, "serve-eval simulated replay")
    return {**bound.to_dict(), "wall_seconds": time.perf_counter() - started}


def summary_rows(results: list[PolicyResult]) -> list[tuple[str, ...]]:
    """policy, online, simulated, oracle, gap (as printed)."""
    rows = []
    for r in results:
        oracle = r.oracle or {}
        if oracle.get("attainment") is not None:
            best = f"{oracle['attainment']:.3f}" + ("" if oracle.get("status") == "optimal" else
                                                    f" (bound {oracle['bound_attainment']:.3f})")
            gap = f"{r.gap:.1%}"
        elif "upper_bound" in oracle:
            best = f"<= {oracle['upper_bound']['attainment']:.3f} (bound; exact: {oracle['skipped']})"
            gap = f"<= {r.gap:.1%}"
        elif "skipped" in oracle:
            best, gap = oracle["skipped"], "-"
        else:  # stopped with no solution: no attainment, and no bound worth printing
            best, gap = f"{oracle['status']}, no solution", "-"
        rows.append((r.policy, f"{r.online['attainment']:.3f}", f"{r.simulated['attainment']:.3f}", best, gap))
    return rows
