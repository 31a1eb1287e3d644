"""`slosched solve INSTANCE.json` (or `--example NAME`): the exact hindsight optimum of a slotted instance."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine_adapter.simulator import simulate
from experiments.cli.arguments import interrupted_exit_code, time_limit
from experiments.errors import ConfigError
from experiments.input_files import load_instance
from formulations.metrics import request_outcomes, score
from solvers.decomposition.solve import solve_decomposition
from solvers.exact.solve import BACKENDS, solve
from solvers.result import Status
from solvers.policies.registry import make_policy

METHODS = ("direct", "decomposition")
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"  # in the source tree, next to README.md


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("solve", help="solve a slotted instance exactly (CP-SAT, CBC or HiGHS)")
    p.add_argument("instance", nargs="?", help="instance JSON (engine.slot_time must be set)")
    p.add_argument("--example", metavar="NAME",
                   help=f"solve a shipped example instance instead ({', '.join(example_names())}; in {EXAMPLES_DIR})")
    p.add_argument("--backend", choices=BACKENDS, default="cpsat")
    p.add_argument("--method", choices=METHODS, default="direct",
                   help="direct: one model of the whole instance; decomposition: a master over which requests are "
                        "met and CP-SAT feasibility checks with cores (compact regime, cpsat only)")
    p.add_argument("--time-limit", type=time_limit, default=60.0, help="seconds > 0 (default 60)")
    p.add_argument("--hint", metavar="POLICY", help="warm start from this policy's simulated schedule (e.g. fcfs)")
    p.add_argument("--no-secondary", action="store_true", help="skip the tie-breaking secondary objective")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--schedule-out", metavar="FILE.jsonl",
                   help="write the best schedule found as JSONL: one JSON object per scored request, then one line "
                        '{"assignment": ...} with the slot-by-slot decisions')
    p.set_defaults(handler=run)


def example_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.json"))


def instance_path(args: argparse.Namespace) -> Path:
    """INSTANCE, or the file of --example NAME (exactly one of them)."""
    if (args.instance is None) == (args.example is None):
        raise ConfigError("solve: give an instance JSON file or --example NAME (one of them; examples: "
                          f"{', '.join(example_names())})")
    if args.instance is not None:
        return Path(args.instance)
    path = EXAMPLES_DIR / f"{args.example}.json"
    if args.example not in example_names():
        raise ConfigError(f"--example {args.example!r}: no such example; valid: {', '.join(example_names())} "
                          f"(in {EXAMPLES_DIR}; examples/make_examples.py regenerates them)")
    return path


def run(args: argparse.Namespace) -> int:
    instance = load_instance(instance_path(args))
    hint = None
    if args.hint:
        hint = simulate(instance, make_policy(args.hint), record_iterations=True)
    if args.method == "decomposition" and args.backend != "cpsat":
        raise ConfigError(f"--method decomposition: --backend {args.backend!r}; the decomposition's checks run on cpsat")
    print(f"solving {len(instance.requests)} requests with {args.backend} ({args.method}, time limit "
          f"{args.time_limit:g} s; Ctrl-C stops with the best schedule found)", file=sys.stderr, flush=True)
    if args.method == "decomposition":
        result = solve_decomposition(instance, time_limit=args.time_limit, hint=hint)
    else:
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
    if args.method == "decomposition":
        st = result.stats
        print(f"master      {st['units']} units, {st['interval_rows']} interval rows, {st['cuts']} core cuts; "
              f"{st['checks']} feasibility checks ({st['check_seconds']:.1f} s), {st['undecided']} undecided")
    return code
