"""Timed fidelity of the simulator against vLLM on a workload its latency model never saw.

serve-eval's procedure without the oracle: per policy, calibrate the latency model on one vLLM
run under that policy (waves of plain requests of varied sizes: a step's time includes the
scheduler's own, so a costlier policy's decide() is in its model), replay a *different* workload
(the config's trace workload) through vLLM with the policy, replay it in the simulator with the
calibrated engine, and compare per request (engine_adapter/fidelity.py): TTFT, TBT and JCT
relative error, median and p90. The goal is a median JCT error <= 10%. Also printed: the latency
model fitted to the run's own steps (R^2, median step error), i.e. how much of the error is the
model's form and how much the calibration's transfer; the JCT bias (median signed error:
systematic or noise); and the scheduler's share of each step. Times on a shared machine are
noisy: run it on a quiet one.

The noise floor (`--floor-runs`, default 2): the same workload replayed on vLLM twice more with
fcfs and the calibrated engine, and the second replay's per-request times scored against the
first's with the same error definitions. No simulator can predict a run closer than the engine
reproduces itself, so a simulator error near the floor is the machine's, not the model's. It runs
in a process of its own: a second vLLM engine in one process slows both.

    .venv-vllm/bin/python benchmarks/timed_fidelity.py [--config experiments/configs/serve_tiny.toml]
        [--policies fcfs,edf] [--time-scale 0.03]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from engine_adapter.bridge_config import BridgeConfig
from engine_adapter.fidelity import FIDELITY_COLUMNS, fidelity_cells, timed_fidelity
from engine_adapter.realized import realize
from experiments.cli.serve_eval import load
from experiments.config import with_overrides
from experiments.studies.serve_eval import build_workload, calibrate, coefficients, serve_eval, vllm_settings
from solvers.prediction.registry import make_predictor


def noise_floor(config, serve, runs: int) -> list[dict]:
    """vLLM against itself: `runs` fcfs replays of the workload, each scored against the first."""
    from engine_adapter.vllm_runner import VllmEngine, replay

    engine = VllmEngine(vllm_settings(config, serve), BridgeConfig(policy="fcfs"))
    latency = coefficients(calibrate(engine, serve.calibration_requests, config.seed))
    engine.configure(BridgeConfig(policy="fcfs", latency=latency))
    instance = realize(build_workload(config, serve), engine.spec, serve.time_scale)
    schedules = [replay(engine, instance, make_predictor("oracle")).schedule for _ in range(runs)]
    return [timed_fidelity(instance, schedules[0], s) for s in schedules[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="experiments/configs/serve_tiny.toml")
    parser.add_argument("--policies", default="fcfs,edf")
    parser.add_argument("--time-scale", type=float, help="override [vllm] time_scale (arrival compression)")
    parser.add_argument("--limit", type=int, help="use the first N requests")
    parser.add_argument("--floor-runs", type=int, default=2, help="vLLM replays for the noise floor (0: skip)")
    args = parser.parse_args()
    config, serve = load(args.config)
    config = with_overrides(config, policies=args.policies.split(","), limit=args.limit)
    serve = replace(serve, oracle_max_requests=0, slot_time=0.0,
                    time_scale=serve.time_scale if args.time_scale is None else args.time_scale)
    load_before = os.getloadavg()
    results = serve_eval(config, serve, progress=print)
    load_after = os.getloadavg()
    print(f"\n{config.name}: {len(results[0].outcomes)} requests, time_scale={serve.time_scale}, "
          f"calibrated on {serve.calibration_requests} other requests; per-request relative error")
    print(f"load average (1, 5, 15 min) before {load_before[0]:.1f} {load_before[1]:.1f} {load_before[2]:.1f}, "
          f"after {load_after[0]:.1f} {load_after[1]:.1f} {load_after[2]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'policy':8} " + " ".join(f"{c:>11}" for c in FIDELITY_COLUMNS)
          + f" {'JCT bias':>9} {'run-fit R^2':>12} {'step err':>9} {'policy share':>13}")
    for r in results:
        print(f"{r.policy:8} " + " ".join(f"{c:>11}" for c in fidelity_cells(r.fidelity))
              + f" {r.fidelity['jct_bias']:9.1%} {r.fit['r2']:12.3f} {r.fit['median_rel_error']:9.1%}"
              + f" {r.run['policy_share_of_step']:13.1%}")
    if args.floor_runs >= 2:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as alone:
            floors = alone.submit(noise_floor, config, serve, args.floor_runs).result()
        for k, floor in enumerate(floors, start=2):
            print(f"{'floor':8} " + " ".join(f"{c:>11}" for c in fidelity_cells(floor))
                  + f" {floor['jct_bias']:9.1%}   (vLLM fcfs replay {k} vs replay 1: the noise floor)")


if __name__ == "__main__":
    main()
