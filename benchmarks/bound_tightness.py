"""Tightness and validity of the attainment upper bound (solvers/bounds) on the `compare`
instances: bound / proven optimum per instance (instances the oracle does not prove within the
time limit are left out and counted). A bound below a proven optimum raises BoundViolated.

    PYTHONPATH=. python benchmarks/bound_tightness.py --instances 100 --time-limit 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from experiments.studies.optimality_gap import random_instance
from solvers.bounds.interval_lp import upper_bound
from solvers.exact.solve import solve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=5.0)
    args = parser.parse_args()
    ratios, unproven, bound_seconds = [], 0, []
    for seed in range(args.seed, args.seed + args.instances):
        inst = random_instance(seed)
        t0 = time.perf_counter()
        bound = upper_bound(inst, time_limit=args.time_limit)
        bound_seconds.append(time.perf_counter() - t0)
        exact = solve(inst, time_limit=args.time_limit, secondary=False)
        if exact.status != "optimal":
            unproven += 1
            continue
        bound.check(exact.objective, f"instance {seed}: proven optimum")
        ratios.append(bound.bound / exact.objective if exact.objective else (1.0 if bound.bound == 0 else np.inf))
        print(f"instance {seed}: optimum {exact.objective}, bound {bound.bound}", flush=True)
    r = np.array(ratios)
    print(f"{len(r)} proven instances ({unproven} unproven left out); bound / optimum: mean {r.mean():.3f}, "
          f"median {np.median(r):.3f}, p90 {np.percentile(r, 90):.3f}, max {r.max():.3f}, "
          f"equal on {np.mean(r == 1.0):.0%}; bound time mean {np.mean(bound_seconds):.3f} s")


if __name__ == "__main__":
    main()
