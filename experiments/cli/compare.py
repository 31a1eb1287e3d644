"""`slosched compare`: every policy against the hindsight optimum on random small instances."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.cli.arguments import interrupted_exit_code, time_limit
from experiments.cli.run import parse_policies as policy_names
from experiments.cli.tables import TextTable, output_console
from experiments.input_files import output_dir
from experiments.studies.optimality_gap import OptimumExceeded, StudyReport, run_study
from experiments.values import NON_NEGATIVE_FLOAT, POSITIVE_INT, SEED


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="optimality gap of every policy on random small slotted instances")
    parser.add_argument("--instances", type=POSITIVE_INT, default=100, help="number of random instances (default 100)")
    parser.add_argument("--seed", type=SEED, default=0, help="seed of the instance generator")
    parser.add_argument("--policies", nargs="+", default=None, metavar="A,B",
                        help="policy names, comma- or space-separated as in `run` (default: all registered)")
    parser.add_argument("--time-limit", type=time_limit, default=5.0,
                        help="oracle seconds per instance (default 5: 100 instances in ~6-9 min on 2 cores)")
    parser.add_argument("--noise", type=NON_NEGATIVE_FLOAT, default=0.0,
                        help="sigma of log-normal length-prediction noise the policies see (0: exact lengths)")
    parser.add_argument("--out", type=Path, default=Path("compare-out"), help="folder for the plot and JSON")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.policies is not None:
        args.policies = policy_names(",".join(args.policies))
    output_dir(args.out)  # before the study: a bad --out must not cost its minutes
    try:
        report = _study(args)
    except OptimumExceeded as err:
        print(f"slosched compare: FAILED: {err}", file=sys.stderr)
        return 3
    except RuntimeError as err:  # no instance proven (time limit too short, or interrupted at once)
        print(f"slosched compare: error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(report.to_dict(), indent=1))
    plot = _plot(report, args.out / "compare.png")
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        _table(report)
        print(f"plot: {plot}  data: {args.out / 'compare.json'}")
    if report.interrupted_by:
        print(f"slosched compare: interrupted by {report.interrupted_by} after {len(report.instances) + report.unproven}"
              f" of {args.instances} instances (those are reported)", file=sys.stderr)
        return interrupted_exit_code(report.interrupted_by)
    return 0


def _study(args: argparse.Namespace) -> StudyReport:
    if args.json:
        return run_study(args.instances, args.seed, policies=args.policies, time_limit=args.time_limit,
                         noise=args.noise)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("instances", total=args.instances)
        return run_study(args.instances, args.seed, policies=args.policies, time_limit=args.time_limit,
                         noise=args.noise, progress=lambda done: bar.update(task, completed=done))


def _table(report: StudyReport) -> None:
    table = TextTable(
        title=f"attainment vs hindsight optimum ({len(report.instances)} instances proven optimal"
              f"{f', {report.unproven} unproven left out' if report.unproven else ''})",
        headers=["policy", "mean\nratio", "min\nratio", "max\nratio", "optimal\nshare", "mean QoE\nratio",
                 "ratio to\nbound (all)"])
    ranked = sorted(report.policies.items(), key=lambda kv: -kv[1].mean_ratio)
    for name, s in ranked:
        qoe = "-" if s.mean_qoe_ratio is None else f"{s.mean_qoe_ratio:.3f}"
        table.rows.append([name, f"{s.mean_ratio:.4f}", f"{s.min_ratio:.3f}", f"{s.max_ratio:.3f}",
                           f"{s.optimal_share:.2%}", qoe,
                           "-" if s.mean_bound_ratio is None else f"{s.mean_bound_ratio:.4f}"])
    console = output_console()
    table.print(console)
    k = report.step_knapsack.to_dict()
    if k["steps"]:
        console.print(f"per-step 2-D knapsack of slo, greedy vs exact: {k['steps']} contended steps, "
                      f"mean gap {k['mean_gap']:.4%}, max gap {k['max_gap']:.4%}, greedy optimal in "
                      f"{k['optimal_share']:.2%}")
    else:
        console.print("per-step knapsack: no contended step (everything always fit)")


def _plot(report: StudyReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(report.policies, key=lambda n: -report.policies[n].mean_ratio)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 4))
    ratios = [[r.met[n] / r.optimum if r.optimum else 1.0 for r in report.instances] for n in names]
    ax.boxplot(ratios, showmeans=True)
    from matplotlib.lines import Line2D

    ax.legend([Line2D([], [], color="C1"), Line2D([], [], color="g", marker="^", ls="")],
              ["median", "mean"], loc="lower left", fontsize=8)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("attainment / hindsight optimum")
    ax.set_title(f"{len(report.instances)} random slotted instances")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
