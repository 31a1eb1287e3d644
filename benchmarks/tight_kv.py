"""DESIGN's tight-KV target: examples/tight-kv-40x200.json (40 requests over ~200 slots, KV at 12%
of the peak demand) proven optimal within 60 s?

Runs the decomposition over met sets (solvers/decomposition/) and, with `--direct`, the direct
CP-SAT solve (solvers/exact/solve.py) with the same warm start and limit, and prints for each:
status (proven or not), objective, bound, seconds, and the decomposition's (seconds, best,
bound) curve. The warm start is the best of the `--hints` policies' simulated schedules.

    PYTHONPATH=. python benchmarks/tight_kv.py --time-limit 60 --direct
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from engine_adapter.simulator import simulate
from experiments.input_files import load_instance
from formulations.metrics import score
from solvers.decomposition.solve import solve_decomposition
from solvers.exact.solve import solve
from solvers.policies.registry import make_policy

INSTANCE = Path(__file__).resolve().parents[1] / "examples" / "tight-kv-40x200.json"


def best_hint(instance, policies: list[str]):
    runs = [(score(instance, s).slo_met, name, s) for name in policies
            for s in [simulate(instance, make_policy(name), record_iterations=True)]]
    return max(runs, key=lambda run: run[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instance", default=str(INSTANCE))
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--hints", nargs="+", default=["edf", "sjf", "slo", "fcfs"])
    ap.add_argument("--workers", type=int, default=2, help="CP-SAT workers (the machine has 2 cores)")
    ap.add_argument("--direct", action="store_true", help="also run the direct CP-SAT solve for comparison")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    inst = load_instance(Path(args.instance))
    met, name, hint = best_hint(inst, args.hints)
    print(f"{len(inst.requests)} requests, {inst.engine.kv_blocks} KV blocks; warm start {name}: {met} met", flush=True)
    rows = []
    t0 = time.perf_counter()
    res = solve_decomposition(inst, time_limit=args.time_limit, hint=hint, workers=args.workers)
    rows.append(dict(method="decomposition", status=str(res.status), objective=res.objective, bound=res.bound,
                     seconds=round(time.perf_counter() - t0, 2), stats=res.stats))
    if args.direct:
        t0 = time.perf_counter()
        direct = solve(inst, time_limit=args.time_limit, hint=hint, secondary=False, workers=args.workers)
        rows.append(dict(method="direct", status=str(direct.status), objective=direct.objective, bound=direct.bound,
                         seconds=round(time.perf_counter() - t0, 2), stats={"probes": direct.stats.get("probes")}))
    print(f"{'method':>14} {'status':>9} {'objective':>9} {'bound':>6} {'seconds':>8} {'ratio':>6}")
    for row in rows:
        print(f"{row['method']:>14} {row['status']:>9} {row['objective']!s:>9} {row['bound']:>6} "
              f"{row['seconds']:>8.2f} {row['seconds'] / rows[0]['seconds']:>6.2f}")
    st = res.stats
    print(f"decomposition: {st['checks']} checks ({st['check_seconds']} s), {st['cores']} cores, {st['cuts']} cuts, "
          f"{st['interval_rows']} interval rows, {st['cache_hits']} cache hits, {st['undecided']} undecided")
    print("curve (seconds, best, bound): " + " ".join(f"({s}, {b}, {u})" for s, b, u in st["curve"]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
