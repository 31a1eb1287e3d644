"""Where a large `slosched run` spends its memory before the simulation: RSS (now and peak) after
each stage of one cell, so the load table's peak can be split into imports, trace, workload and
the simulator's own state.

Usage: python benchmarks/load_stages.py [--requests 1000000] [--policy fcfs] [--seconds S]
Stages: the CLI's `run` imports, the synthetic trace written, the workload built (Instance), its
request table, then the streamed simulation (`run_cell` as `slosched run` calls it), with a line
at every further 10% of simulated progress, stopped after `--seconds` (0: no simulation). The
trace is load_table.py's (azure-conv lengths, Poisson arrivals).
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
    parser.add_argument("--seconds", type=float, default=0.0, help="simulate for at most this long (0: not at all)")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"{'stage':<28} {'RSS MB':>8} {'peak MB':>8} {'s':>8}")
    stage("interpreter", started)
    import experiments.cli.run  # noqa: F401  (what `slosched run` imports)
    from load_table import CONFIG, synthetic_trace
    from experiments.config import load_config
    from experiments.runner import Cell, build_cell_instance
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
        if args.seconds > 0:
            simulate_for(cell, instance, Path(tmp), started, args.seconds)


class _Stop(Exception):
    """Raised from the progress callback when the time is up."""


def simulate_for(cell, instance, tmp: Path, started: float, seconds: float) -> None:
    from experiments.runner import run_cell

    deadline = time.perf_counter() + seconds
    shown = [-1]

    def progress(fraction: float) -> None:
        if int(fraction * 10) > shown[0]:
            shown[0] = int(fraction * 10)
            stage(f"simulating: {fraction:.0%}", started)
        if time.perf_counter() > deadline:
            raise _Stop

    try:
        result = run_cell(cell, instance, progress=progress, streamed_in=tmp / "spill")
        stage(f"simulated ({result.metrics['requests']} scored)", started)
    except _Stop:
        stage("stopped (--seconds)", started)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
