"""How large an instance each exact backend proves optimal within the time limit.

Instances: formulations.exact.generate.scale_instance (requests x iterations, KV at a fraction
of the total peak demand). Each backend gets the same instance, the same warm start (the edf
baseline's schedule) and `--time-limit` seconds for the attainment objective (the secondary
objective is skipped: it only breaks ties). Prints, per size and backend: status, seconds to
the proof (or the limit), attainment found, bound, gap, model size; and the ratio of each
backend's time to CP-SAT's.

    PYTHONPATH=. python benchmarks/oracle_scale.py --sizes 10x50 20x100 40x200 --tightness 0.2

CP-SAT on the token model searches top-down (probes "attainment >= ub", see solvers/exact/tokens.py);
the JSON rows list its probes (target, outcome, seconds).
"""

from __future__ import annotations

import argparse
import json
import time

from engine_adapter.simulator import simulate
from formulations.exact.generate import scale_instance
from formulations.metrics import score
from solvers.exact.solve import solve
from solvers.policies.registry import make_policy

VARIANTS = {
    "cpsat": dict(backend="cpsat"),  # token-indexed CP-SAT on the compact model
    "cpsat-slots": dict(backend="cpsat", cpsat_formulation="slots"),  # slot-indexed compact model
    "cpsat-general": dict(backend="cpsat", model="general"),  # full slot model, no dominance rules
    "highs": dict(backend="highs"),
    "cbc": dict(backend="cbc"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["10x50", "20x100", "40x200"], help="REQUESTSxITERATIONS")
    ap.add_argument("--variants", nargs="+", default=["cpsat", "highs", "cbc"], choices=sorted(VARIANTS))
    ap.add_argument("--tightness", type=float, default=0.2, help="KV blocks / total peak demand")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-hint", action="store_true")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    rows = []
    print(f"{'size':>8} {'variant':>14} {'status':>8} {'seconds':>8} {'found':>6} {'bound':>6} {'gap':>7} "
          f"{'hint':>5} {'vars':>7} {'ratio':>7}", flush=True)
    for size in args.sizes:
        n, iters = (int(v) for v in size.lower().split("x"))
        inst = scale_instance(args.seed, n, iters, kv_tightness=args.tightness)
        hint = None if args.no_hint else simulate(inst, make_policy("edf"), record_iterations=True)
        hint_met = score(inst, hint).slo_met if hint is not None else None
        base = None
        for name in args.variants:
            t0 = time.perf_counter()
            res = solve(inst, time_limit=args.time_limit, hint=hint, secondary=False, **VARIANTS[name])
            secs = time.perf_counter() - t0
            base = secs if base is None else base
            row = dict(size=size, requests=n, horizon=res.horizon, kv_blocks=inst.engine.kv_blocks, variant=name,
                       status=res.status, seconds=round(secs, 2), found=res.objective, bound=res.bound, gap=res.gap,
                       hint=hint_met, variables=res.stats["variables"], model=res.stats["model"],
                       probes=res.stats.get("probes"))
            rows.append(row)
            gap = "-" if res.gap is None else f"{res.gap:.1%}"
            print(f"{size:>8} {name:>14} {res.status:>8} {secs:>8.2f} {str(res.objective):>6} {res.bound:>6} {gap:>7} "
                  f"{str(hint_met):>5} {res.stats['variables']:>7} {secs / base:>7.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
