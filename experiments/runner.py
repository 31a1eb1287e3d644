"""Run an experiment as independent cells: one per rate_scale x seed x policy.

A cell carries everything it needs (the config, its policy, rate scale and seed) and its result
everything needed to interpret it later (metrics, per-request outcomes, the config as TOML-shaped
data, versions, git commit), so cells can run in any order, in other processes or machines, and
be stored one file each. Only `execute` knows about backends.
"""

from __future__ import annotations

import gzip
import inspect
import io
import json
import platform
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np

from engine_adapter.simulator import simulate
from experiments.config import ExperimentConfig, config_from_dict
from experiments.errors import CellFailed, ConfigError
from experiments.input_files import atomic_file
from experiments.ordered_lines import OrderedLines
from experiments.workloads.sharegpt.conversations import build_multi_turn_instance
from experiments.workloads.sharegpt.workload import build_sharegpt_instance, is_sharegpt
from experiments.workloads.trace_loader import Columns, Trace, load_trace
from experiments.workloads import build_instance
from formulations.instance import Instance
from formulations.metrics import RequestOutcome, request_outcomes, summarize
from formulations.streamed_score import StreamedScore
from solvers.policies.registry import make_policy
from solvers.prediction.registry import make_predictor, predictor_class

BACKENDS = ("sequential",)
Progress = Callable[[float], None]


@dataclass(frozen=True)
class Cell:
    config: ExperimentConfig
    policy: str
    rate_scale: float
    seed: int

    @property
    def key(self) -> str:
        """Unique within an experiment and safe as a file name."""
        return f"{self.policy}-rs{self.rate_scale:g}-seed{self.seed}" + caching_suffix(self.config)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able): what identifies the cell, e.g. for a result store's key."""
        return {"config": self.config.to_dict(), "policy": self.policy, "rate_scale": self.rate_scale,
                "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        return cls(config_from_dict(data["config"]), data["policy"], float(data["rate_scale"]), int(data["seed"]))

    @property
    def workload_key(self) -> tuple[float, int]:
        """Cells with equal workload keys (of one config) run on the same instance."""
        return (self.rate_scale, self.seed)


@dataclass
class CellResult:
    key: str
    policy: str
    rate_scale: float
    seed: int
    metrics: dict[str, Any]  # formulations.metrics.Metrics.to_dict()
    outcomes: list[dict[str, Any]]  # RequestOutcome.to_dict() per request, instance order
    config: dict[str, Any]  # ExperimentConfig.to_dict()
    predictor: str
    iterations: int
    wall_seconds: float  # simulation and scoring
    versions: dict[str, str]
    git_commit: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellResult:
        return cls(**data)


def caching_suffix(config: ExperimentConfig) -> str:
    """"-cache-on"/"-cache-off" for a cell of a sweep over prefix caching, else ""."""
    if not config.sweep.prefix_caching:
        return ""
    return "-cache-on" if config.engine.overrides.get("enable_prefix_caching") else "-cache-off"


def expand_cells(config: ExperimentConfig) -> list[Cell]:
    """Every rate_scale x seed x prefix-caching variant x policy; without a [sweep] the config's
    own rate_scale, seed and engine."""
    rates = config.sweep.rate_scales or (config.workload.rate_scale,)
    seeds = config.sweep.seeds or (config.seed,)
    return [Cell(variant, policy, float(rate), int(seed)) for rate in rates for seed in seeds
            for variant in config.caching_variants() for policy in config.policies]


def build_cell_instance(cell: Cell) -> Instance:
    workload = replace(cell.config.workload, rate_scale=cell.rate_scale)
    if workload.kind == "multi-turn":
        return build_multi_turn_instance(workload, cell.config.engine.build(), cell.seed)
    if is_sharegpt(workload.trace):
        return build_sharegpt_instance(workload, cell.config.engine.build(), cell.seed)
    trace = _trace(workload.trace, workload.columns, workload.time_unit)
    return build_instance(workload, cell.config.engine.build(), cell.seed, trace=trace)


def run_cell(cell: Cell, instance: Instance | None = None, progress: Progress | None = None,
             schedule_path: Path | None = None, token_lists: bool = True,
             streamed_in: Path | None = None,
             outcome_row: Callable[[RequestOutcome], dict[str, Any]] | None = None) -> CellResult:
    """Simulate one policy on the cell's workload and score it. `instance` may be shared by
    cells with the same workload key (it is never modified). token_lists=False leaves each
    outcome's token_times a float64 array (a caller that slims the outcomes then never holds a
    Python float per token).

    With `streamed_in` (a folder for temporary files) the requests are scored as they finish and
    none is kept (the result has no outcomes): memory follows the live requests, not the run's
    length. `schedule_path` (streamed only) then receives each scored request as a JSONL line, in
    instance order, atomically; `outcome_row` (streamed only) makes the result's outcomes, one row
    per request as it is scored (e.g. without its token times)."""
    config = cell.config
    instance = instance if instance is not None else build_cell_instance(cell)
    policy = make_policy(cell.policy, **config.policy_kwargs(cell.policy))
    predictor = make_predictor(config.predictor.name, **_predictor_params(config, cell.seed))
    started = time.perf_counter()
    if streamed_in is None:
        schedule = simulate(instance, policy, predictor, progress=progress)
        outcomes = request_outcomes(instance, schedule, config.qoe_threshold, token_lists=token_lists)
        metrics = summarize(outcomes, config.qoe_threshold)
        rows = [o.to_dict() for o in outcomes]
    else:
        streamed_in.mkdir(parents=True, exist_ok=True)
        rows = [] if outcome_row is None else [{}] * len(instance.requests)
        with _schedule_out(schedule_path) as fh:
            lines = None if fh is None else OrderedLines(fh, len(instance.requests), streamed_in)

            def emit(index: int, outcome: RequestOutcome) -> None:
                if lines is not None:
                    lines.put(index, schedule_line(outcome))
                if outcome_row is not None:
                    rows[index] = outcome_row(outcome)

            scorer = StreamedScore(instance, config.qoe_threshold, emit, streamed_in)
            schedule = simulate(instance, policy, predictor, progress=progress, on_done=scorer.add)
            metrics = scorer.metrics()
            if lines is not None:
                lines.close()
    return CellResult(
        key=cell.key, policy=cell.policy, rate_scale=cell.rate_scale, seed=cell.seed,
        metrics=metrics.to_dict(), outcomes=rows,
        config=config.to_dict(), predictor=config.predictor.name, iterations=schedule.iterations,
        wall_seconds=time.perf_counter() - started, versions=versions(), git_commit=git_commit(),
    )


def execute(cells: list[Cell], backend: str = "sequential", progress: Callable[[int, float], None] | None = None,
            keep_going: bool = False, schedule_paths: list[Path] | None = None,
            streamed_in: Path | None = None) -> list[CellResult]:
    """Run cells, results in the order of `cells`. `progress(cell_index, fraction)` is called
    as each cell advances (fraction 1.0 when it is done). With `streamed_in` cells are scored
    streamed (see run_cell) and `schedule_paths[k]` receives cell k's scored requests. A failing
    cell raises `CellFailed` with the finished results in `partial`; with `keep_going` after
    every other cell has run."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r}; valid: {', '.join(BACKENDS)}")
    instances: dict[tuple[int, tuple[float, int]], Instance] = {}
    results: list[CellResult | None] = []
    failures: list[CellFailed] = []
    for k, cell in enumerate(cells):
        if failures and not keep_going:
            break
        on_progress = (lambda f, k=k: progress(k, f)) if progress else None
        key = (id(cell.config), cell.workload_key)
        if key not in instances:  # bad input fails here, the same for every policy: raised as is
            instances[key] = build_cell_instance(cell)
        try:
            results.append(run_cell(cell, instances[key], on_progress, schedule_paths[k] if schedule_paths else None,
                                    streamed_in=streamed_in))
        except OSError:
            raise  # a full disk: every cell would fail the same way
        except Exception as err:
            failures.append(CellFailed(k, cell, err))
            results.append(None)
        if progress:
            progress(k, 1.0)
    failure = CellFailed.first_of(failures)
    if failure is not None:
        failure.partial = results + [None] * (len(cells) - len(results))
        raise failure from failure.cause
    return results


@contextmanager
def _schedule_out(path: Path | None) -> Iterator[IO | None]:
    """A text stream into `path`, atomic; a `.gz` path is gzip'd (a demo's token times are ~35 MB
    as text, a tenth of that compressed). None without a path."""
    if path is None:
        yield None
        return
    with atomic_file(path, "wb" if path.suffix == ".gz" else "w") as raw:
        with _text_out(raw, path) as fh:
            yield fh


def schedule_line(outcome: RequestOutcome) -> str:
    """One line of a schedule file: the scored request as JSON, id and class first."""
    data = outcome.to_dict()
    data["token_times"] = np.asarray(data["token_times"]).tolist()
    return json.dumps({"id": data["id"], "class": data["class"], **data}, allow_nan=False) + "\n"


def _text_out(raw: IO, path: Path) -> IO:
    """`raw` itself, or a text stream gzip'ing into it (mtime 0: the same schedule gives the same bytes)."""
    if path.suffix != ".gz":
        return nullcontext(raw)
    return io.TextIOWrapper(gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6), encoding="utf-8")


def _predictor_params(config: ExperimentConfig, seed: int) -> dict[str, Any]:
    """The configured parameters; a predictor that draws random errors gets the cell's seed
    unless the config fixes its own."""
    params = dict(config.predictor.params)
    factory = predictor_class(config.predictor.name)
    if "seed" not in params and "seed" in inspect.signature(factory).parameters:
        params["seed"] = seed
    return params


@lru_cache(maxsize=4)
def _trace(name_or_path: str, columns: Columns | None, time_unit: str | None) -> Trace:
    return load_trace(name_or_path, columns, time_unit)


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("slosched", "numpy", "ortools"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the checkout the code runs from, '+dirty' if it has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")
