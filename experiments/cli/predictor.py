"""`slosched predictor train|eval`: the learned output-length predictor on ShareGPT."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from solvers.prediction.features import FeatureConfig
from solvers.prediction.learned import TrainConfig, default_artifact


def register(subparsers) -> None:
    parser = subparsers.add_parser("predictor", help="train / evaluate the learned output-length predictor")
    sub = parser.add_subparsers(dest="predictor_command", metavar="ACTION", required=True)

    train = sub.add_parser("train", help="train on the ShareGPT train split and save a versioned artifact")
    train.add_argument("--out", type=Path, default=None, help=f"artifact path (default {default_artifact()})")
    train.add_argument("--sample", type=int, default=None, help="train on a seeded sample of N pairs (default all)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--trees", type=int, default=TrainConfig.n_estimators)
    train.add_argument("--min-leaf", type=int, default=TrainConfig.min_samples_leaf)
    train.add_argument("--svd", type=int, default=FeatureConfig.svd_components, help="text SVD components")
    train.add_argument("--jobs", type=int, default=2, help="parallel tree fitting")
    train.set_defaults(handler=run_train)

    ev = sub.add_parser("eval", help="accuracy on the held-out split vs. global and prompt-length-bucket medians")
    ev.add_argument("--artifact", type=Path, default=None, help="artifact path (default: the trained default)")
    ev.add_argument("--sample", type=int, default=None, help="evaluate on a seeded sample of N test pairs")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--json", type=Path, default=None, help="also write the report here")
    ev.set_defaults(handler=run_eval)

    st = sub.add_parser("study", help="attainment of each policy under oracle, learned, noisy and no prediction")
    st.add_argument("config", nargs="?", type=Path, default=STUDY_CONFIG, help="experiment TOML (default: prediction.toml)")
    st.add_argument("--json", type=Path, default=None, help="also write the table here")
    st.set_defaults(handler=run_study_cmd)


STUDY_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "prediction.toml"


def run_train(args: argparse.Namespace) -> int:
    from experiments.studies.predictor_eval import train

    out = args.out or default_artifact()
    config = TrainConfig(features=FeatureConfig(svd_components=args.svd), n_estimators=args.trees,
                         min_samples_leaf=args.min_leaf, seed=args.seed, n_jobs=args.jobs)
    start = time.perf_counter()
    model = train(out, config, args.sample)
    print(f"trained on {model.meta['examples']} pairs in {model.meta['train_seconds']} s "
          f"(total {time.perf_counter() - start:.1f} s incl. data); artifact: {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from experiments.studies.predictor_eval import accuracy_report

    report = accuracy_report(args.artifact or default_artifact(), args.sample, args.seed)
    levels = report["levels"]
    table = Table(title=f"Output-length prediction on {report['test_pairs']} held-out ShareGPT pairs "
                        f"(trained on {report['train_pairs']})")
    table.add_column("predictor")
    table.add_column("MAE (p50)", justify="right")
    table.add_column("Kendall tau", justify="right")
    for q in levels:
        table.add_column(f"pinball q{q:g}", justify="right")
    for q in levels:
        table.add_column(f"cover q{q:g}", justify="right")
    for name, row in report["predictors"].items():
        table.add_row(name, f"{row['mae']:.1f}", f"{row['kendall_tau']:.3f}",
                      *(f"{x:.1f}" for x in row["pinball"]), *(f"{x:.3f}" for x in row["coverage"]))
    Console(width=220).print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"report: {args.json}")
    return 0


def run_study_cmd(args: argparse.Namespace) -> int:
    from experiments.config import load_config
    from experiments.studies.prediction import run_study

    config = load_config(args.config)
    console = Console(width=160)

    def on_cell(variant: str, policy: str, seed: int, metrics: dict) -> None:
        console.print(f"  {variant:13s} {policy:8s} seed {seed}: attainment {metrics['attainment']:.3f}")

    table = run_study(config, on_cell=on_cell)
    policies = list(config.policies)
    out = Table(title=f"SLO attainment by length predictor ({config.name}: mean over seeds)")
    out.add_column("predictor")
    for policy in policies:
        out.add_column(policy, justify="right")
    for variant, rows in table.items():
        out.add_row(variant, *(f"{rows[p]['attainment']:.3f}" for p in policies))
    console.print(out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": config.to_dict(), "table": table}, indent=1))
        print(f"table: {args.json}")
    return 0
