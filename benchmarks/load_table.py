"""Load table: `slosched run` on synthetic traces of growing size, per policy (target: memory
linear in the request count and <= 1 GB at 1M requests for every policy).

Usage: python benchmarks/load_table.py [--requests 10000 100000] [--policies fcfs slo] [--timeout S]
Each (requests, policy) runs the real CLI in a fresh process and reports wall seconds, the
process's CPU seconds (wall seconds mean little on a shared machine), its peak RSS, MB per 1,000
requests, and whether every request is accounted for (the
metrics count and the schedule file's lines both equal the trace's rows). The trace resamples
azure-conv's prompt/output lengths (seeded) with Poisson arrivals at `--rate` req/s. The
machines are shared: wall seconds compare only within one run of this script.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.workloads.trace_loader import load_trace

CONFIG = """
name = "load"
policies = ["fcfs"]
[workload]
trace = "{trace}"
columns = {{ arrival = "ts", prompt = "in", output = "out" }}
[workload.mix]
latency = 0.5
throughput = 0.3
bulk = 0.2
[predictor]
name = "oracle"
"""


def synthetic_trace(path: Path, requests: int, rate: float, seed: int = 0) -> None:
    source = load_trace("azure-conv")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(source), requests)
    arrival = np.cumsum(rng.exponential(1.0 / rate, requests))
    with path.open("w") as fh:
        fh.write("ts,in,out\n")
        for a, p, o in zip(arrival, source.prompt_len[pick], source.output_len[pick]):
            fh.write(f"{a:.4f},{p},{o}\n")


def run_once(config: Path, policy: str, out: Path, timeout: float) -> tuple[float, float, float, int | None]:
    """Wall seconds, CPU seconds, peak RSS MB and the exit code (None: timed out) of one CLI run."""
    cmd = [sys.executable, "-m", "experiments.cli", "run", str(config), "--policies", policy, "--out", str(out),
           "--json"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return time.perf_counter() - started, _cpu(usage), usage.ru_maxrss / 1024, proc.returncode
        if time.perf_counter() > deadline:
            proc.kill()
            _, _, usage = os.wait4(proc.pid, 0)
            return time.perf_counter() - started, _cpu(usage), usage.ru_maxrss / 1024, None
        time.sleep(0.2)


def _cpu(usage: os.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def accounted(out: Path, policy: str, requests: int) -> str:
    metrics_path = out / "metrics.json"
    if not metrics_path.is_file():
        return "no metrics.json"
    metrics = json.loads(metrics_path.read_text())["policies"][policy]
    with gzip.open(out / f"schedule-{policy}.jsonl.gz", "rt") as fh:
        lines = sum(1 for _ in fh)
    ok = metrics["requests"] == requests == lines
    return f"{'yes' if ok else 'NO'} ({metrics['requests']} scored, {lines} lines, {metrics['unfinished']} unfinished)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--policies", nargs="+", default=["fcfs", "slo"])
    parser.add_argument("--rate", type=float, default=8.0, help="arrivals per second")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    args = parser.parse_args()
    print(f"{'requests':>9} {'policy':>7} {'wall s':>8} {'cpu s':>8} {'peak MB':>8} {'MB/1k req':>9}  all accounted for")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.requests:
            trace = Path(tmp) / f"trace-{n}.csv"
            synthetic_trace(trace, n, args.rate)
            config = Path(tmp) / f"load-{n}.toml"
            config.write_text(CONFIG.format(trace=trace))
            for policy in args.policies:
                out = Path(tmp) / f"out-{n}-{policy}"
                wall, cpu, peak, code = run_once(config, policy, out, args.timeout)
                status = "timed out" if code is None else accounted(out, policy, n) if code == 0 else f"exit {code}"
                print(f"{n:>9} {policy:>7} {wall:>8.1f} {cpu:>8.1f} {peak:>8.0f} {peak / n * 1000:>9.1f}  {status}",
                      flush=True)


if __name__ == "__main__":
    main()
