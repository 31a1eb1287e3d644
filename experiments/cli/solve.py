"""`slosched solve INSTANCE.json`: the exact hindsight optimum of a slotted instance."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine_adapter.simulator import simulate
from experiments.cli.arguments import interrupted_exit_code, time_limit
from experiments.input_files import load_instance
from formulations.metrics import request_outcomes, score
from solvers.exact.solve import BACKENDS, solve
from solvers.result import Status
from solvers.policies.registry import make_policy


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("solve", help="solve a slotted instance exactly (CP-SAT, CBC or HiGHS)")
    p.add_argument("instance", help="instance JSON (engine.slot_time must be set)")
    p.add_argument("--backend", choices=BACKENDS, default="cpsat")
    p.add_argument("--time-limit", type=time_limit, default=60.0, help="seconds > 0 (default 60)")
    p.add_argument("--hint", metavar="POLICY", help="warm start from this policy's simulated schedule (e.g. fcfs)")
    p.add_argument("--no-secondary", action="store_true", help="skip the tie-breaking secondary objective")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--schedule-out", metavar="FILE", help="write the optimal schedule (one JSON line per request)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    instance = load_instance(args.instance)
    hint = None
    if args.hint:
        hint = simulate(instance, make_policy(args.hint), record_iterations=True)
    print(f"solving {len(instance.requests)} requests with {args.backend} (time limit {args.time_limit:g} s; "
          "Ctrl-C stops with the best schedule found)", file=sys.stderr, flush=True)
    result = solve(instance, args.backend, time_limit=args.time_limit, hint=hint, secondary=not args.no_secondary)
    out = result.to_dict()
    out["requests"] = len(instance.requests)
    if hint is not None:
        out["hint_attainment"] = score(instance, hint).slo_met
    if result.schedule is not None:
        out["attainment"] = score(instance, result.schedule).attainment
    if args.schedule_out and result.schedule is not None:
        lines = [json.dumps(o.to_dict()) for o in request_outcomes(instance, result.schedule)]
        lines.append(json.dumps({"assignment": result.assignment.to_dict()}))
        Path(args.schedule_out).write_text("\n".join(lines) + "\n")
    code = interrupted_exit_code(result.stats.get("signal")) if result.status == Status.INTERRUPTED else 0
    if args.json:
        print(json.dumps(out, indent=1))
        return code
    print(f"status      {result.status}: {result.status.meaning} ({result.backend}, {result.seconds:.2f} s, "
          f"horizon {result.horizon} slots)")
    print(f"SLO met     {result.objective} of {len(instance.requests)} (bound {result.bound}, gap "
          f"{'-' if result.gap is None else f'{result.gap:.2%}'})")
    if result.secondary_status is not None:
        print(f"secondary   {result.secondary} unfinished request-slots ({result.secondary_status.meaning})")
    if hint is not None:
        print(f"hint        {args.hint}: {out['hint_attainment']} met")
    print(f"model       {result.stats['variables']} variables, {result.stats['constraints']} constraints")
    return code
