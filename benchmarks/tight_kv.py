"""DESIGN's tight-KV target: examples/tight-kv-40x200.json (40 requests over ~200 slots, KV at 12%
of the peak demand) proven optimal within 60 s?

Runs the decomposition over met sets (solvers/decomposition/) and, with `--direct`, the direct
CP-SAT solve (solvers/exact/solve.py) with the same warm start and limit, and prints for each:
status (proven or not), objective, bound, seconds, and the decomposition's (seconds, best,
bound) curve. The warm start is the best of the `--hints` policies' simulated schedules.

With `--lp-guided`, also the slot LP's route (solvers/bounds/slot_lp.py): its bound, then a dive
from its optimum to a set of units, then the direct solve of the instance cut down to that set
(warm-started from the best policy there). The units left out are never admitted, so a schedule
meeting every unit of the set meets that many SLOs on the whole instance (the compact model's
dominance rules, as for the decomposition's checks); equal to the bound, it is proven optimal.

    PYTHONPATH=. python benchmarks/tight_kv.py --time-limit 60 --direct --lp-guided
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from engine_adapter.simulator import simulate
from experiments.input_files import load_instance
from formulations.bounds.intervals import build_relaxation
from formulations.bounds.slot_relaxation import slot_relaxation
from formulations.instance import sub_instance
from formulations.metrics import score
from solvers.bounds.slot_lp import SlotLp
from solvers.decomposition.solve import solve_decomposition
from solvers.exact.solve import solve
from solvers.policies.registry import make_policy

INSTANCE = Path(__file__).resolve().parents[1] / "examples" / "tight-kv-40x200.json"


def best_hint(instance, policies: list[str]):
    runs = [(score(instance, s).slo_met, name, s) for name in policies
            for s in [simulate(instance, make_policy(name), record_iterations=True)]]
    return max(runs, key=lambda run: run[0])


def lp_guided(inst, time_limit: float, hints: list[str], workers: int, leave_out: list[str] | None = None,
              certificate: Path | None = None) -> dict:
    """The slot LP's bound, its dive's sets, and the direct solve of the instance cut down to
    each set in turn (an equal share of the time left each) until one meets every request.
    `leave_out`: check only the set of every unit but those of these request ids (no dive).
    `certificate`: where to write the schedule of a set met in full, as an assignment of the
    whole instance (request indices of the whole instance; the units left out never run)."""
    t0 = time.perf_counter()
    rel = build_relaxation(inst)
    lp = SlotLp(slot_relaxation(inst, rel.windows, rel.unit, rel.weight, rel.alive))
    bound = lp.solve(time_limit)
    if leave_out is not None:
        out = {int(rel.unit[i]) for i, r in enumerate(inst.requests) if r.id in leave_out}
        sets = [frozenset(int(u) for u in rel.unit if u not in out)]
    else:
        sets = lp.dive(time_limit - (time.perf_counter() - t0)) if bound is not None else []
    row = dict(method="lp-guided", status="timeout", objective=None, bound=bound, stats={"tried": []})
    for k, chosen in enumerate(sets):
        left = time_limit - (time.perf_counter() - t0)
        if left <= 0:
            break
        sub = sub_instance(inst, [i for i in range(len(inst.requests)) if rel.unit[i] in chosen])
        keep = sub.requests
        met, name, hint = best_hint(sub, hints)
        res = solve(sub, time_limit=left / (len(sets) - k), hint=hint, secondary=False, workers=workers)
        row["stats"]["tried"].append({"left_out": sorted(r.id for r in inst.requests if r not in keep),
                                      "status": str(res.status), "met": res.objective, "of": len(keep),
                                      "seconds": round(res.seconds, 2), "warm_start": [name, met]})
        row["objective"] = max(row["objective"] or 0, res.objective)  # the units left out are never admitted
        if res.objective == len(keep):
            row["status"] = "optimal" if bound is not None and res.objective >= bound else "timeout"
            if certificate is not None:
                write_certificate(certificate, inst, keep, res.assignment, row)
            break
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def write_certificate(path: Path, inst, keep: tuple, assignment, row: dict) -> None:
    """The sub-instance's assignment renumbered to the whole instance's request indices."""
    index = {r.id: i for i, r in enumerate(inst.requests)}
    full = [index[r.id] for r in keep]
    path.write_text(json.dumps({
        "instance": "examples/tight-kv-40x200.json", "met": row["objective"], "bound": row["bound"],
        "left_out": row["stats"]["tried"][-1]["left_out"], "slot_time": assignment.slot_time,
        "run": [[full[k] for k in slot] for slot in assignment.run],
        "preempt": [[full[k] for k in slot] for slot in assignment.preempt],
        "made_by": "PYTHONPATH=. python benchmarks/tight_kv.py --no-decomposition --lp-guided --leave-out "
                   + ",".join(row["stats"]["tried"][-1]["left_out"]) + f" --certificate {path}",
    }, indent=None) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instance", default=str(INSTANCE))
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--hints", nargs="+", default=["edf", "sjf", "slo", "fcfs"])
    ap.add_argument("--workers", type=int, default=2, help="CP-SAT workers (the machine has 2 cores)")
    ap.add_argument("--direct", action="store_true", help="also run the direct CP-SAT solve for comparison")
    ap.add_argument("--lp-guided", action="store_true", help="also the slot LP's bound, dive and checks (see above)")
    ap.add_argument("--no-decomposition", action="store_true", help="skip the decomposition")
    ap.add_argument("--leave-out", help="with --lp-guided: check only the set without these request ids (comma-separated)")
    ap.add_argument("--certificate", help="with --lp-guided: write a schedule meeting a whole set here (JSON)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    inst = load_instance(Path(args.instance))
    met, name, hint = best_hint(inst, args.hints)
    print(f"{len(inst.requests)} requests, {inst.engine.kv_blocks} KV blocks; warm start {name}: {met} met", flush=True)
    rows = []
    if not args.no_decomposition:
        t0 = time.perf_counter()
        res = solve_decomposition(inst, time_limit=args.time_limit, hint=hint, workers=args.workers)
        rows.append(dict(method="decomposition", status=str(res.status), objective=res.objective, bound=res.bound,
                         seconds=round(time.perf_counter() - t0, 2), stats=res.stats))
    if args.direct:
        t0 = time.perf_counter()
        direct = solve(inst, time_limit=args.time_limit, hint=hint, secondary=False, workers=args.workers)
        rows.append(dict(method="direct", status=str(direct.status), objective=direct.objective, bound=direct.bound,
                         seconds=round(time.perf_counter() - t0, 2), stats={"probes": direct.stats.get("probes")}))
    if args.lp_guided:
        leave_out = args.leave_out.split(",") if args.leave_out else None
        rows.append(lp_guided(inst, args.time_limit, args.hints, args.workers, leave_out,
                              Path(args.certificate) if args.certificate else None))
    print(f"{'method':>14} {'status':>9} {'objective':>9} {'bound':>6} {'seconds':>8} {'ratio':>6}")
    for row in rows:
        print(f"{row['method']:>14} {row['status']:>9} {row['objective']!s:>9} {row['bound']!s:>6} "
              f"{row['seconds']:>8.2f} {row['seconds'] / rows[0]['seconds']:>6.2f}")
    for row in rows:
        if row["method"] != "decomposition":
            continue
        st = row["stats"]
        print(f"decomposition: {st['checks']} checks ({st['check_seconds']} s), {st['cores']} cores, "
              f"{st['cuts']} cuts, "
              f"{st['interval_rows']} interval rows, {st['cache_hits']} cache hits, {st['undecided']} undecided, "
              f"slot LP bound {st['slot_lp_bound']}")
        print("curve (seconds, best, bound): " + " ".join(f"({s}, {b}, {u})" for s, b, u in st["curve"]))
    for row in rows:
        if row["method"] == "lp-guided":
            for tried in row["stats"]["tried"]:
                print(f"lp-guided: left out {tried['left_out']}: {tried['met']} of {tried['of']} met "
                      f"({tried['status']}, {tried['seconds']} s, warm start {tried['warm_start'][0]} "
                      f"{tried['warm_start'][1]})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
