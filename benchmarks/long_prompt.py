"""Long prompts with the full-prompt admission gate on and off (issue 12: KV thrashing).

vLLM 0.32 admits a waiting request only when its whole prompt fits in free KV
(`scheduler_reserve_full_isl=True`, the default). Without that gate a long prompt is admitted as
soon as its first chunk fits, and the chunks that follow may preempt the residents (and each
other): on long prompts the engine recomputes instead of serving. This script measures that on a
public trace: the Azure LLM inference trace 2023 (code by default, or conversation), keeping only prompts of at least
`--min-prompt` tokens (code: 1,241 of 8,819 requests have >= 4,096, median 6,192 tokens,
median output 13; conversation: 416 of 19,366), the
first `--requests` of them at `--rate-scale` times their trace rate, a 50/30/20
latency/throughput/bulk mix (the mixed-slo SLO rules), on a Llama-3-8B/H100 profile with
`--kv-blocks` KV blocks (16 tokens each).

Usage: python benchmarks/long_prompt.py [--requests 600] [--rate-scale 4] [--kv-blocks 8000] [--policies ...]
Prints per policy and gate setting: preemptions, preemptions per request, SLO attainment,
output tokens per second of simulated time.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from rich.console import Console
from rich.table import Table

from engine_adapter.simulator import simulate
from experiments.workloads.builder import build_instance
from experiments.workloads.spec import ClassMix, WorkloadConfig
from experiments.workloads.trace_loader import Trace, load_trace
from formulations.engine_spec import EngineSpec
from formulations.metrics import score
from solvers.policies.registry import POLICIES, make_policy

def long_prompts(trace: Trace, min_prompt: int, count: int) -> Trace:
    """The first `count` requests of `trace` with prompts >= min_prompt, arrivals re-based to 0."""
    keep = np.flatnonzero(trace.prompt_len >= min_prompt)[:count]
    if len(keep) < count:
        raise SystemExit(f"{trace.source}: only {len(keep)} prompts >= {min_prompt} tokens, asked for {count}")
    arrival = trace.arrival[keep] - trace.arrival[keep[0]]
    return Trace(source=trace.source, arrival=arrival, prompt_len=trace.prompt_len[keep],
                 output_len=trace.output_len[keep], line=trace.line[keep])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default="azure-code", choices=["azure-code", "azure-conv"])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--min-prompt", type=int, default=4096, help="tokens")
    parser.add_argument("--rate-scale", type=float, default=4.0)
    parser.add_argument("--kv-blocks", type=int, default=8000)
    parser.add_argument("--profile", default="llama3-8b-h100")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policies", nargs="*", default=sorted(POLICIES))
    args = parser.parse_args()

    trace = long_prompts(load_trace(args.trace), args.min_prompt, args.requests)
    workload = WorkloadConfig(trace=args.trace, rate_scale=args.rate_scale,
                              mix=ClassMix(latency=0.5, throughput=0.3, bulk=0.2))
    engine = dataclasses.replace(EngineSpec.from_profile(args.profile), kv_blocks=args.kv_blocks)
    table = Table(title=f"{args.requests} prompts >= {args.min_prompt} tokens of {args.trace} "
                        f"(median {int(np.median(trace.prompt_len))}), x{args.rate_scale} rate, "
                        f"KV {args.kv_blocks} blocks, seed {args.seed}")
    for column in ("policy", "gate", "preemptions", "per request", "SLO %", "tok/s"):
        table.add_column(column, justify="left" if column in ("policy", "gate") else "right")
    for policy in args.policies:
        for gate in (False, True):
            instance = build_instance(workload, dataclasses.replace(engine, reserve_full_prompt=gate),
                                      args.seed, trace)
            metrics = score(instance, simulate(instance, make_policy(policy)))
            table.add_row(policy, "full prompt" if gate else "first chunk", str(metrics.preemptions),
                          f"{metrics.preemptions / len(instance.requests):.2f}", f"{100 * metrics.attainment:.1f}",
                          f"{metrics.throughput:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
