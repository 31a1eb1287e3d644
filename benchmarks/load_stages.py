"""Where a large `slosched run` spends its memory before the simulation: RSS (now and peak) after
each stage of one cell, so the load table's peak can be split into imports, trace, workload and
the simulator's own state.

Usage: python benchmarks/load_stages.py [--requests 1000000] [--policy fcfs] [--simulate]
Stages: the CLI's `run` imports, the synthetic trace read, the workload built (Instance), its
request table, the simulator set up (policy, predictor, live state) and, with --simulate, the
whole streamed run. The trace is load_table.py's (azure-conv lengths, Poisson arrivals).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path


def rss_mb() -> tuple[float, float]:
    """Current and peak resident set size of this process, MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage(name: str, started: float) -> None:
    now, peak = rss_mb()
    print(f"{name:<28} {now:>8.0f} {peak:>8.0f} {time.perf_counter() - started:>8.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--policy", default="fcfs")
    parser.add_argument("--rate", type=float, default=8.0, help="arrivals per second")
    parser.add_argument("--simulate", action="store_true", help="also run the simulation, scored streamed")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"{'stage':<28} {'RSS MB':>8} {'peak MB':>8} {'s':>8}")
    stage("interpreter", started)
    from experiments.cli import build_parser
    build_parser(["run"])
    from load_table import CONFIG, synthetic_trace
    from experiments.config import load_config
    from experiments.runner import Cell, build_cell_instance, run_cell
    stage("imports (slosched run)", started)
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.csv"
        synthetic_trace(trace, args.requests, args.rate)
        toml = Path(tmp) / "load.toml"
        toml.write_text(CONFIG.format(trace=trace))
        config = load_config(toml)
        cell = Cell(config, args.policy, config.workload.rate_scale, config.seed)
        stage("trace written", started)
        instance = build_cell_instance(cell)
        stage("workload built (Instance)", started)
        table = instance.table
        stage(f"request table ({len(table)} rows)", started)
        if args.simulate:
            result = run_cell(cell, instance, streamed_in=Path(tmp) / "spill")
            stage(f"simulated ({result.metrics['requests']} scored)", started)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
