"""`slosched knapsack FILE`: exact optimum vs the policies' greedy on OR-Library m-D knapsacks."""

from __future__ import annotations

import argparse
import json

from experiments.cli.arguments import interrupted_exit_code, time_limit
from experiments.input_files import read_text
from formulations.exact.knapsack import KnapsackProblem, read_orlib
from solvers.knapsack.cpsat import solve_cpsat
from solvers.knapsack.dp import MAX_STATES, dp_size, solve_dp
from solvers.interrupt import interruptible
from solvers.knapsack.greedy import greedy_knapsack


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("knapsack", help="solve OR-Library multidimensional knapsack problems exactly")
    p.add_argument("file", help="OR-Library mknap1/mknapcb format file")
    p.add_argument("--time-limit", type=time_limit, default=10.0, help="CP-SAT seconds > 0 per problem (default 10)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per problem")
    p.set_defaults(handler=run)


def solve_one(problem: KnapsackProblem, time_limit: float) -> dict:
    """Exact result (DP when the capacity lattice is small, CP-SAT otherwise) next to the greedy."""
    if dp_size(problem) <= MAX_STATES // 10:
        exact = solve_dp(problem)
    else:
        exact = solve_cpsat(problem, time_limit=time_limit)
    greedy = problem.value(greedy_knapsack(problem.values, problem.weights, problem.capacities,
                                           max_items=problem.max_items))
    reference = exact.bound if exact.bound > 0 else 0.0
    return {
        "name": problem.name,
        "optimum": exact.value if exact.optimal else None,
        "best": exact.value,
        "bound": exact.bound,
        "status": exact.status,
        "greedy": greedy,
        "greedy_gap": (reference - greedy) / reference if reference > 0 else 0.0,
        "seconds": exact.seconds,
        "best_known": problem.best_known,
    }


def run(args: argparse.Namespace) -> int:
    problems = read_orlib(args.file, read_text(args.file, "knapsack file"))
    results = []
    with interruptible() as stop:  # Ctrl-C: the problem being solved returns its best, the rest are skipped
        for problem in problems:
            results.append(solve_one(problem, args.time_limit))
            if stop.requested:
                break
    code = interrupted_exit_code(stop.signal_name) if stop.requested else 0
    if args.json:
        print(json.dumps(results, indent=1))
        return code
    print(f"{'problem':<24} {'optimum':>12} {'bound':>12} {'greedy':>12} {'gap':>8} {'seconds':>8}")
    for r in results:
        opt = f"{r['optimum']:g}" if r["optimum"] is not None else f"{r['best']:g}*"
        print(f"{r['name']:<24} {opt:>12} {r['bound']:>12g} {r['greedy']:>12g} {r['greedy_gap']:>8.2%} {r['seconds']:>8.3f}")
    if any(r["optimum"] is None for r in results):
        print("* best found, not proven optimal (time limit or interrupt)")
    if stop.requested:
        print(f"interrupted by {stop.signal_name}: {len(results)} of {len(problems)} problems reported")
    return code
