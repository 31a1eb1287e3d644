"""Simulator speed on the full azure-conv trace with fcfs (DESIGN target: <= 2.5 s, <= 300 MB).

Usage: python benchmarks/sim_speed.py [--class latency|throughput] [--limit N] [--profile NAME] [--policy NAME]
Prints simulated requests and iterations per wall-second, wall seconds, peak memory, and the
ratios to the targets (ratio <= 1 meets the target).
"""

from __future__ import annotations

import argparse
import resource
import time

from engine_adapter.simulator import simulate
from experiments.trace_loader import load_trace
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.requests import Request, RequestClass
from solvers.policies.registry import make_policy

TARGET_SECONDS = 2.5
TARGET_MB = 300.0


def build_instance(cls: RequestClass, limit: int | None, profile: str) -> Instance:
    trace = load_trace("azure-conv")
    arrival, prompt, output = trace.arrival, trace.prompt_len, trace.output_len
    if limit:
        arrival, prompt, output = arrival[:limit], prompt[:limit], output[:limit]
    slo = dict(ttft_target=1.0, read_rate=10.0) if cls is RequestClass.LATENCY else dict(slack_ratio=5.0)
    requests = tuple(
        Request(id=f"r{i}", cls=cls, arrival=float(a), prompt_len=int(p), output_len=max(1, int(o)), **slo)
        for i, (a, p, o) in enumerate(zip(arrival, prompt, output, strict=True))
    )
    return Instance(EngineSpec.from_profile(profile), requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--class", dest="cls", default="latency", choices=["latency", "throughput"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--profile", default="llama3-8b-h100")
    parser.add_argument("--policy", default="fcfs")
    args = parser.parse_args()
    t0 = time.perf_counter()
    instance = build_instance(RequestClass(args.cls), args.limit, args.profile)
    t1 = time.perf_counter()
    cpu1 = time.process_time()
    schedule = simulate(instance, make_policy(args.policy))
    t2 = time.perf_counter()
    cpu = time.process_time() - cpu1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sim = t2 - t1
    total = t2 - t0
    n = len(instance.requests)
    assert all(tl.finish is not None for tl in schedule.timelines), "some request did not finish"
    print(f"requests            {n}")
    print(f"iterations          {schedule.iterations}")
    print(f"simulated span (s)  {max(tl.finish for tl in schedule.timelines):.1f}")
    print(f"load trace+instance {t1 - t0:.3f} s")
    print(f"simulate            {sim:.3f} s wall, {cpu:.3f} s CPU (wall > CPU means a loaded machine)")
    print(f"end-to-end          {total:.3f} s")
    print(f"requests / wall-s   {n / sim:,.0f}")
    print(f"iterations / wall-s {schedule.iterations / sim:,.0f}")
    print(f"peak RSS            {peak_mb:.0f} MB")
    print(f"ratio to 2.5 s target (end-to-end wall)          {total / TARGET_SECONDS:.2f}")
    print(f"ratio to 2.5 s target (load wall + simulate CPU) {(t1 - t0 + cpu) / TARGET_SECONDS:.2f}")
    print(f"ratio to 300 MB target                           {peak_mb / TARGET_MB:.2f}")


if __name__ == "__main__":
    main()
