"""The policy's share of a vLLM step: SloScheduler with a policy vs vLLM's default scheduler.

Two in-process engines with the same tiny model and capacities, one with vLLM's own scheduler
and one with SloScheduler, replay the same workload in turns (`--reps` rounds, each round every
scheduler once, so machine noise hits all alike). Reported per policy:
- policy share: time in decide() plus the bridge (view, batch rules, applying the plan, token
  stamping) / step
  time, inside the SloScheduler runs (the design goal: < 5%), and the two parts separately;
- time ratio vs the default scheduler (submission + step loop wall time for the same workload;
  includes the bridge's bookkeeping of token times in update_from_output).
A tiny 2-layer model makes steps short (a few ms on CPU), so the shares are pessimistic next to
a real model on a GPU, whose steps are longer while the policy's cost stays the same. Both engines
run with prefix caching on, vLLM's default (`--prefix-caching off` to compare); the prompts are
random, so hits come from requests resumed after a preemption.

    .venv-vllm/bin/python benchmarks/vllm_overhead.py [--requests 256] [--reps 3] [--policies fcfs,andes,slo]
        [--prefix-caching on|off]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from engine_adapter.bridge_config import BridgeConfig
from engine_adapter.realized import realize
from engine_adapter.vllm_runner import VllmEngine, VllmSettings, replay
from formulations.instance import Instance
from formulations.requests import Request, RequestClass, ValidationError
from solvers.policies.registry import make_policy


def workload(n: int, seed: int) -> list[Request]:
    """All requests at time 0, mixed classes and lengths: many live requests for the policy."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        prompt, output = int(rng.integers(16, 200)), int(rng.integers(16, 120))
        if i % 2:
            out.append(Request(id=f"r{i}", cls=RequestClass.LATENCY, arrival=0.0, prompt_len=prompt,
                               output_len=output, ttft_target=0.5, read_rate=30.0))
        else:
            out.append(Request(id=f"r{i}", cls=RequestClass.THROUGHPUT, arrival=0.0, prompt_len=prompt,
                               output_len=output, slack_ratio=float(rng.uniform(2, 8))))
    return out


def run_default(engine: VllmEngine, requests: list[Request]) -> tuple[float, int]:
    """Submit and drain, timed like `replay` (submission + step loop)."""
    started = time.perf_counter()
    for r in requests:
        engine.submit(r.id, r.prompt_len, r.output_len)
    steps = 0
    while engine.busy():
        engine.step()
        steps += 1
    return time.perf_counter() - started, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--policies", default="fcfs,andes,slo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefix-caching", choices=("on", "off"), default="on", help="vLLM's default: on")
    args = parser.parse_args()

    policies, missing = [], []
    for name in args.policies.split(","):
        try:
            make_policy(name)
            policies.append(name)
        except ValidationError:
            missing.append(name)
    settings = VllmSettings(kv_blocks=256, block_size=32, max_num_seqs=64, max_num_batched_tokens=1024,
                            max_model_len=512, enable_prefix_caching=args.prefix_caching == "on")
    default = VllmEngine(settings)
    bridged = VllmEngine(settings, BridgeConfig(policy="fcfs", slot_time=None))
    requests = workload(args.requests, args.seed)
    instance = realize(Instance(bridged.spec, tuple(requests)), bridged.spec)
    base = {"seconds": 0.0, "steps": 0}
    stats = {p: {"seconds": 0.0, "steps": 0, "policy": 0.0, "decide": 0.0, "step": 0.0} for p in policies}
    run_default(default, requests)  # warm-up of both engines
    bridged.configure(BridgeConfig(policy="fcfs"))
    replay(bridged, instance)
    for _ in range(args.reps):
        seconds, steps = run_default(default, requests)
        base["seconds"] += seconds
        base["steps"] += steps
        for name in policies:
            bridged.configure(BridgeConfig(policy=name))
            started = time.perf_counter()
            result = replay(bridged, instance)
            stats[name]["seconds"] += time.perf_counter() - started
            log = result.schedule.meta["iteration_log"]
            stats[name]["steps"] += result.schedule.iterations
            stats[name]["policy"] += float(log["policy_seconds"].sum())
            stats[name]["decide"] += float(log["decide_seconds"].sum())
            stats[name]["step"] += float(log["step_seconds"].sum())
    print(f"{args.requests} requests at t=0, tiny Llama (2 layers), max_num_seqs={settings.max_num_seqs}, "
          f"prefix caching {args.prefix_caching}, {args.reps} rounds; default vLLM scheduler: {base['steps'] // args.reps} steps, "
          f"{1e3 * base['seconds'] / base['steps']:.2f} ms/step")
    print(f"{'policy':8} {'steps':>6} {'ms/step':>8} {'decide ms':>10} {'bridge ms':>10} {'decide share':>13} "
          f"{'policy share':>13} {'vs default':>11}")
    for name in policies:
        s = stats[name]
        per_step = s["seconds"] / s["steps"]
        print(f"{name:8} {s['steps'] // args.reps:6d} {1e3 * per_step:8.2f} {1e3 * s['decide'] / s['steps']:10.3f} "
              f"{1e3 * (s['policy'] - s['decide']) / s['steps']:10.3f} {s['decide'] / s['step']:13.1%} "
              f"{s['policy'] / s['step']:13.1%} {s['seconds'] / base['seconds']:10.2f}x")
    print("decide: the policy's decide(); bridge: the view, the batch rules, applying the plan, restoring vLLM's "
          "queues, stamping tokens; "
          "policy share = (decide + bridge) / step time")
    if missing:
        print(f"not measured (no such policy in the registry yet): {', '.join(missing)}")


if __name__ == "__main__":
    main()
