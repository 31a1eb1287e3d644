"""`slo` with rejection on (the default) vs off on mixed-slo: attainment, rejected, time to reject.

Usage: python benchmarks/slo_rejection.py [--rate-scales 3 5 7] [--seed 0] [--config experiments/configs/mixed-slo.toml]
One simulated cell per load and setting (the config's workload and predictor); prints attainment,
how many requests were rejected, how many were served late, and the mean time from arrival to
rejection.
"""

from __future__ import annotations

import argparse
import dataclasses

from experiments.config import load_config
from experiments.runner import Cell, run_cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/configs/mixed-slo.toml")
    parser.add_argument("--rate-scales", type=float, nargs="+", default=[3.0, 5.0, 7.0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base = load_config(args.config)
    for scale in args.rate_scales:
        for reject in (True, False):
            config = dataclasses.replace(base, policies=["slo"], policy_params={"slo": {"reject": reject}})
            m = run_cell(Cell(config, "slo", scale, args.seed)).metrics
            wait = m["time_to_reject"]["mean"]
            print(f"x{scale:g} reject {'on ' if reject else 'off'}: attainment {m['attainment']:.4f}, "
                  f"rejected {m['rejected']}, served late {m['served_late']}, "
                  f"mean time to reject {'-' if wait is None else f'{wait:.1f} s'}", flush=True)


if __name__ == "__main__":
    main()
