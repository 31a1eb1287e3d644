"""`slosched bench [CONFIG.toml] --url URL`: replay a workload against a running OpenAI-compatible
server and score it exactly as the simulator is scored (QoE, attainment per class, TTFT/TBT/JCT).

The workload is the config's (trace, classes, SLOs, DAG groups); with a `[vllm]` table it is
the very workload `serve-eval` runs (lengths clipped to its max_model_len, arrivals x its
time_scale). Deadlines are slack x T_alone under the config's engine profile. Writes
OUT/bench.json (config, settings, metrics, goodput = SLO-met requests per second of the run,
per-status counts) and OUT/schedule-bench.jsonl (one
scored request per line, with the client's status). Ctrl-C stops the replay and still writes
both files, unfinished requests scored as unfinished (exit code 130).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine_adapter.http_replay import PROMPT_KINDS, ReplayResult, ReplaySettings, replay
from engine_adapter.realized import realize
from experiments.cli.run import DEMO_CONFIG, metrics_table
from experiments.cli.serve_eval import read_config
from experiments.config import ExperimentConfig, from_mapping, with_overrides
from experiments.errors import ConfigError
from experiments.runner import CellResult, git_commit, versions
from experiments.studies.serve_eval import ServeSettings, build_workload
from experiments.workloads import build_instance
from formulations.instance import Instance
from formulations.metrics import request_outcomes, summarize

INTERRUPTED = 130


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="replay a workload against an OpenAI-compatible server and score it",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", default=str(DEMO_CONFIG),
                   help="experiment TOML (default: the demo; a [vllm] table, as serve-eval's, sets lengths and time scale)")
    p.add_argument("--url", default="http://127.0.0.1:8000/v1", help="API root (default http://127.0.0.1:8000/v1)")
    p.add_argument("--model", help="model name to request (default: the server's first model)")
    p.add_argument("--concurrency", type=int, default=64, help="streams open at once (default 64)")
    p.add_argument("--prompt", choices=PROMPT_KINDS, default="tokens",
                   help="token-id prompts (server with --skip-tokenizer-init; default) or text")
    p.add_argument("--vocab-size", type=int, default=1000, help="token ids are drawn below this (default 1000)")
    p.add_argument("--no-slo", action="store_true", help="do not send SLOs in vllm_xargs (server without slosched)")
    p.add_argument("--index-base", type=int, default=0,
                   help="shift request indices sent to slosched's scheduler (a second run on the same server)")
    p.add_argument("--time-scale", type=float, help="run seconds per workload second (default: [vllm] time_scale or 1)")
    p.add_argument("--trace", metavar="PATH|NAME", help="trace file or registered name instead of the config's")
    p.add_argument("--limit", type=int, metavar="N", help="use the first N requests")
    p.add_argument("--seed", type=int, metavar="N", help="workload seed")
    p.add_argument("--label", default="server", help="the row's name in the table (default: server)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds without data before a request fails")
    p.add_argument("--out", default="bench-out", help="output directory (default bench-out)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON only")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config, instance = bench_instance(args)
    model = args.model or first_model(args.url)
    try:
        settings = ReplaySettings(url=args.url, model=model, concurrency=args.concurrency, prompt=args.prompt,
                                  vocab_size=args.vocab_size, send_slo=not args.no_slo, index_base=args.index_base,
                                  request_timeout=args.timeout, seed=config.seed)
    except ValueError as err:
        raise ConfigError(f"bench: {err}") from None
    result = _replay_with_progress(instance, settings)
    document = write_outputs(Path(args.out), config, instance, settings, result)
    if args.json:
        print(json.dumps(document["metrics"], indent=1))
    else:
        console = Console()
        if not console.is_terminal:  # piped: do not squeeze the table into 80 columns, as `run`
            console = Console(width=140)
        cell = CellResult(key=args.label, policy=args.label, rate_scale=config.workload.rate_scale, seed=config.seed,
                          metrics=document["metrics"], outcomes=[], config=config.to_dict(), predictor="server",
                          iterations=0, wall_seconds=result.wall_seconds, versions=versions(), git_commit=git_commit())
        console.print(metrics_table(replace(config, name=f"bench {config.name}"), [cell]))
        console.print(f"goodput {document['goodput']:.2f} SLO-met requests/s over {result.wall_seconds:.1f} s; "
                      f"statuses: {document['statuses']}; wrote {args.out}/bench.json and schedule-bench.jsonl")
    if result.interrupted:
        print("slosched bench: interrupted; partial results written", file=sys.stderr)
        return INTERRUPTED
    return 0


def bench_instance(args: argparse.Namespace) -> tuple[ExperimentConfig, Instance]:
    """The config's workload, as serve-eval builds it when there is a [vllm] table, realized in time."""
    config, vllm_table = read_config(args.config)
    serve = from_mapping(ServeSettings, vllm_table, "vllm") if vllm_table is not None else None
    config = with_overrides(config, trace=args.trace, limit=args.limit, seed=args.seed)
    if serve is not None:
        base = build_workload(config, serve)
        time_scale = serve.time_scale
    else:
        base = build_instance(config.workload, config.engine.build(), config.seed)
        time_scale = 1.0
    time_scale = args.time_scale if args.time_scale is not None else time_scale
    if not time_scale > 0:
        raise ConfigError(f"--time-scale={time_scale} must be > 0")
    return config, realize(base, base.engine, time_scale)


def first_model(url: str) -> str:
    """The first model the server lists (GET /models); a clear error when there is no server."""
    try:
        response = httpx.get(url.rstrip("/") + "/models", timeout=10.0)
        response.raise_for_status()
        return response.json()["data"][0]["id"]
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as err:
        raise ConfigError(f"--url {url}: cannot list the server's models ({type(err).__name__}: {err}); "
                          "is the server running? (or pass --model)") from None


def _replay_with_progress(instance: Instance, settings: ReplaySettings) -> ReplayResult:
    console = Console(stderr=True)
    total_tokens = sum(r.output_len for r in instance.requests)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        requests = bar.add_task("requests", total=len(instance.requests))
        tokens = bar.add_task("tokens", total=total_tokens)
        return replay(instance, settings, on_tokens=lambda n: bar.advance(tokens, n),
                      on_done=lambda _record: bar.advance(requests))


def write_outputs(out: Path, config: ExperimentConfig, instance: Instance, settings: ReplaySettings,
                  result: ReplayResult) -> dict[str, Any]:
    outcomes = request_outcomes(instance, result.schedule, config.qoe_threshold)
    metrics = summarize(outcomes, config.qoe_threshold).to_dict()
    statuses = dict(Counter(r.status for r in result.records))
    document = {"experiment": config.name, "config": config.to_dict(), "settings": asdict(settings),
                "time_scale": instance.meta.get("time_scale", 1.0), "interrupted": result.interrupted,
                "wall_seconds": result.wall_seconds, "clock_origin": result.clock_origin, "statuses": statuses,
                "goodput": metrics["slo_met"] / result.wall_seconds if result.wall_seconds > 0 else 0.0,
                "metrics": metrics,
                "versions": versions(), "git_commit": git_commit()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(document, indent=1))
    with (out / "schedule-bench.jsonl").open("w") as fh:
        table = instance.table
        for i, (outcome, record) in enumerate(zip(outcomes, result.records, strict=True)):
            parents = [instance.requests[p].id for p in table.parents[i]]
            line = {"id": outcome.id, "class": outcome.cls, "status": record.status, "sent": record.sent,
                    "parents": parents, **outcome.to_dict()}
            fh.write(json.dumps(line) + "\n")
    return document
