"""Tightness and validity of the attainment upper bound (solvers/bounds) on the `compare`
instances: bound / proven optimum per instance (instances the oracle does not prove within the
time limit are left out and counted), for the interval bound alone and with the per-slot KV
relaxation (the bound `slosched gap` reports), and that relaxation's time-indexed LP alone (slotted
instances). A bound below a proven optimum raises BoundViolated.

    PYTHONPATH=. python benchmarks/bound_tightness.py --instances 100 --time-limit 5
    PYTHONPATH=. python benchmarks/bound_tightness.py --family overloaded --instances 40 --time-limit 20

`--family overloaded`: the small capacity-bound instances of tests/test_bounds.py.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from experiments.studies.optimality_gap import random_instance
from formulations.exact.generate import overloaded_instance
from solvers.bounds.interval_lp import upper_bound
from solvers.exact.solve import solve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=5.0)
    parser.add_argument("--family", choices=("compare", "overloaded"), default="compare")
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {"interval": [], "interval+slots": [], "slot LP alone": []}
    seconds: dict[str, list[float]] = {"interval": [], "interval+slots": []}
    unproven = 0
    for seed in range(args.seed, args.seed + args.instances):
        inst = random_instance(seed) if args.family == "compare" else overloaded_instance(seed)
        bounds = {}
        for name, slots in (("interval", False), ("interval+slots", True)):
            t0 = time.perf_counter()
            bounds[name] = upper_bound(inst, time_limit=args.time_limit, slots=slots)
            seconds[name].append(time.perf_counter() - t0)
        exact = solve(inst, time_limit=args.time_limit, secondary=False)
        if exact.status != "optimal":
            unproven += 1
            continue
        values = {name: bound.bound for name, bound in bounds.items()}
        for name, bound in bounds.items():
            bound.check(exact.objective, f"instance {seed}: proven optimum ({name})")
        lp = bounds["interval+slots"].slot_lp_bound
        if lp is not None:
            assert lp >= exact.objective, f"instance {seed}: slot LP {lp} < proven optimum {exact.objective}"
            values["slot LP alone"] = lp
        for name, value in values.items():
            ratios[name].append(value / exact.objective if exact.objective else (1.0 if value == 0 else np.inf))
        print(f"instance {seed}: optimum {exact.objective}, bound {values['interval']} (interval), "
              f"{values['interval+slots']} (with slots), {values.get('slot LP alone')} (slot LP)", flush=True)
    print(f"{len(ratios['interval'])} proven instances ({unproven} unproven left out)")
    for name, values in ratios.items():
        r = np.array(values)
        if len(r):
            print(f"{name}: bound / optimum mean {r.mean():.3f}, median {np.median(r):.3f}, "
                  f"p90 {np.percentile(r, 90):.3f}, max {r.max():.3f}, equal on {np.mean(r == 1.0):.0%}; "
                  + (f"bound time mean {np.mean(seconds[name]):.3f} s, max {np.max(seconds[name]):.3f} s"
                     if name in seconds else "(part of interval+slots)"))


if __name__ == "__main__":
    main()
