"""Replay an `Instance` against an in-process vLLM engine whose scheduler is `SloScheduler`.

The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0) so the scheduler object, and
with it every token's time, is at hand. Requests are token-id prompts of the instance's lengths
with `max_tokens = output_len, ignore_eos=True`, so each produces exactly its true length.
Arrivals are replayed in real time, optionally scaled (`time_scale`: instance second -> run
seconds), or, with a slotted scheduler clock, by iteration count; DAG children are submitted
when their last parent finishes. The result is the same `Schedule` the simulator produces,
scored by the same `score()` against the *realized* instance (arrivals on the run's clock, the
engine as vLLM has it).

Importing this module does not import vLLM; `VllmEngine` does, when built. `realize` (in
engine_adapter/realized.py) maps a workload onto the engine before the replay.
"""

from __future__ import annotations

import heapq
import json
import os
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine_adapter.bridge_config import BridgeConfig
from engine_adapter.content_tokens import ContentTokens
from engine_adapter.slo_args import slo_extra_args
from engine_adapter.tiny_model import write_tiny_llama
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.online import Policy
from formulations.schedule import RequestTimeline, Schedule
from formulations.turns import turn_release
from solvers.prediction.base import LengthPredictor

SCHEDULER_CLS = "engine_adapter.vllm_scheduler.SloScheduler"
STALL_SECONDS = 30.0  # wall mode: no token for this long while requests are live = a stalled policy
STALL_STEPS = 100_000  # slotted mode: consecutive steps without a token


class EngineStalled(RuntimeError):
    """The policy keeps every live request from running and nothing else can happen."""


def configure_environment() -> None:
    """Settings for an in-process CPU engine; must run before vLLM (and torch) are imported."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the scheduler object must live here
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2-core machines stall ~100 ms/step otherwise
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(Path(tempfile.gettempdir()) / "slosched-vllm-cache"))
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


@dataclass(frozen=True)
class VllmSettings:
    """The engine: a local model directory (None: the tiny random Llama) and its capacities."""

    model: str | None = None
    kv_blocks: int = 64  # usable KV blocks (vLLM gets one more: its reserved null block)
    block_size: int = 32  # CPU attention needs a multiple of 32
    max_num_seqs: int = 32
    max_num_batched_tokens: int = 512
    max_model_len: int = 1024
    dtype: str = "float32"
    seed: int = 0
    reserve_full_isl: bool = True  # vLLM's scheduler_reserve_full_isl (its default)
    watermark: float = 0.0  # vLLM's watermark (its default)
    # vLLM's default is on. The bridge supports it (tests/test_vllm_prefix.py); the in-process engine
    # leaves it off unless asked for, so the benchmarks' random prompts run both schedulers without it
    enable_prefix_caching: bool = False

    def __post_init__(self) -> None:
        if self.kv_blocks * self.block_size < self.max_model_len:
            raise ValueError(f"vllm settings: kv_blocks*block_size={self.kv_blocks * self.block_size} must be >= "
                             f"max_model_len={self.max_model_len}")


def _kv_bytes_per_token(model_dir: Path, dtype: str) -> int:
    cfg = json.loads((model_dir / "config.json").read_text())
    heads = cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    width = 4 if dtype == "float32" else 2
    return 2 * cfg["num_hidden_layers"] * heads * head_dim * width


class VllmEngine:
    """An in-process vLLM `LLMEngine`; `bridge=None` keeps vLLM's own scheduler (for comparisons)."""

    def __init__(self, settings: VllmSettings, bridge: BridgeConfig | None = None) -> None:
        configure_environment()
        from vllm import EngineArgs, SamplingParams
        from vllm.v1.engine.llm_engine import LLMEngine

        from engine_adapter.vllm_kernel_scan import skip_llvmlite_in_kernel_scan

        skip_llvmlite_in_kernel_scan()

        self._sampling_params = SamplingParams
        self.settings = settings
        self.bridge = bridge
        if settings.model is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="slosched-tiny-llama-")
            model_dir, load_format = write_tiny_llama(self._tmp.name), "dummy"
        else:
            model_dir, load_format = Path(settings.model), "auto"
        blocks = settings.kv_blocks + 1
        kv_bytes = 2 * blocks * settings.block_size * _kv_bytes_per_token(model_dir, settings.dtype)
        extra: dict[str, Any] = {}
        if bridge is not None:
            from engine_adapter.vllm_checks import VALIDATOR

            extra = {"scheduler_cls": SCHEDULER_CLS, "additional_config": bridge.to_additional_config(),
                     "logits_processors": [VALIDATOR]}
        args = EngineArgs(
            model=str(model_dir), load_format=load_format, skip_tokenizer_init=True, enforce_eager=True,
            dtype=settings.dtype, block_size=settings.block_size, num_gpu_blocks_override=blocks,
            kv_cache_memory_bytes=kv_bytes, max_model_len=settings.max_model_len,
            max_num_batched_tokens=settings.max_num_batched_tokens, max_num_seqs=settings.max_num_seqs,
            enable_prefix_caching=settings.enable_prefix_caching, disable_log_stats=True, seed=settings.seed,
            scheduler_reserve_full_isl=settings.reserve_full_isl, watermark=settings.watermark, **extra,
        )
        started = time.perf_counter()
        self.llm = LLMEngine.from_engine_args(args)
        self.start_seconds = time.perf_counter() - started
        self.scheduler = self.llm.engine_core.engine_core.scheduler
        self.output_tokens: dict[str, int] = {}  # request id -> tokens vLLM returned, once finished
        self.finish_reasons: dict[str, str | None] = {}  # request id -> vLLM's finish reason ("length", "abort", ...)
        self.outputs: dict[str, list[int]] = {}  # request id -> the token ids it generated, once finished
        self._vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]

    @property
    def vocab_size(self) -> int:
        return self._vocab

    @property
    def spec(self) -> EngineSpec:
        """The engine as the scheduler's policies see it."""
        return self.scheduler.engine_spec

    def configure(self, bridge: BridgeConfig, policy: Policy | None = None) -> None:
        """Switch the scheduler to other settings or another policy object (engine idle)."""
        if self.bridge is None:
            raise RuntimeError("this engine runs vLLM's own scheduler")
        self.bridge = bridge
        self.scheduler.configure(bridge, policy)

    def submit(self, request_id: str, prompt_len: int, output_len: int, extra_args: dict | None = None,
               tokens: list[int] | None = None) -> None:
        """Add a request; `tokens` (content_tokens.py) realizes shared content, else random ids."""
        if tokens is None:
            rng = np.random.default_rng([self.settings.seed, zlib.crc32(request_id.encode())])
            tokens = rng.integers(3, min(self._vocab, 1000), size=prompt_len).tolist()
        params = self._sampling_params(max_tokens=output_len, ignore_eos=True, temperature=0.0, extra_args=extra_args)
        self.llm.add_request(request_id, {"prompt_token_ids": tokens}, params)

    def step(self) -> None:
        for out in self.llm.step():
            if out.finished:
                self.output_tokens[out.request_id] = len(out.outputs[0].token_ids)
                self.finish_reasons[out.request_id] = out.outputs[0].finish_reason
                self.outputs[out.request_id] = list(out.outputs[0].token_ids)

    def busy(self) -> bool:
        return self.llm.has_unfinished_requests()

    def drain(self) -> None:
        while self.busy():
            self.step()


@dataclass
class VllmRun:
    instance: Instance  # realized: arrivals on the run's clock, this engine's capacities
    schedule: Schedule
    stats: dict[str, Any] = field(default_factory=dict)


def replay(engine: VllmEngine, instance: Instance, predictor: LengthPredictor | None = None) -> VllmRun:
    """Run `instance` (already realized for this engine) through the engine; returns its Schedule.

    Prompts realize the instance's content ids (content_tokens.py); with prefix caching the cache
    is reset first, so no block of an earlier run hits (as in a fresh simulator pool)."""
    sched = engine.scheduler
    if engine.settings.enable_prefix_caching and (engine.busy() or not engine.llm.reset_prefix_cache()):
        raise RuntimeError("replay: the engine must be idle")
    content = ContentTokens(instance, engine.vocab_size, engine.settings.seed)
    if sched.engine_spec.slot_time != instance.engine.slot_time:
        raise ValueError(f"instance slot_time={instance.engine.slot_time} but the scheduler's is "
                         f"{sched.engine_spec.slot_time}")
    table = instance.table
    n = len(instance.requests)
    pred = predictor.predict(instance.requests) if predictor is not None else None
    levels = predictor.quantile_levels if predictor is not None else None
    loop = _ReleaseLoop(instance)
    slotted = instance.engine.slot_time is not None

    sched.begin_run(time.perf_counter())
    wall_start = time.perf_counter()
    submitted: set[int] = set()
    seen_rejections = 0
    idle_steps = 0
    last_progress = time.perf_counter()
    while len(submitted) + len(loop.never_released) < n or engine.busy():
        now = sched.now()
        for due, i in loop.due(now):
            # as in the simulator: released at the first slot boundary it can run in
            release = now if slotted else due
            req = instance.requests[i]
            sent = due if req.after is not None else float(table.arrival[i])  # a later turn: when its user sent it
            args = slo_extra_args(instance, i, arrival=sent, release=release,
                                  pred=None if pred is None else pred[i], levels=levels)
            engine.submit(req.id, req.prompt_len, req.output_len, args, tokens=content.prompt(i))
            submitted.add(i)
        if engine.busy():
            steps_before = len(sched.log)
            engine.step()
            if len(sched.log) > steps_before:
                idle_steps, last_progress = 0, time.perf_counter()
            else:
                idle_steps += 1
                if (slotted and idle_steps > STALL_STEPS) or time.perf_counter() - last_progress > STALL_SECONDS:
                    raise EngineStalled(f"policy {sched.slo_policy.name!r} runs nothing while {len(submitted)} "
                                        f"requests are submitted (t={now:.3f})")
        elif loop.pending:
            if slotted:
                sched.advance_to(loop.next_time())
            else:
                time.sleep(max(0.0, loop.next_time() - sched.now()))
        else:
            raise EngineStalled(f"{n - len(submitted)} requests wait for parents that never finish")
        for index, t in sched.newly_finished:
            content.finished(index, engine.outputs[instance.requests[index].id])
            loop.finished(index, t)
        sched.newly_finished.clear()
        rejections = list(sched.book.rejected.items())
        for row, t in rejections[seen_rejections:]:
            loop.rejected(int(sched.book.index[row]), t)
        seen_rejections = len(rejections)

    log = sched.log.arrays()
    meta = {
        "engine": "vllm", "policy": sched.slo_policy.name, "predictor": sched.predictor.name if pred is None else predictor.name,
        "wall_seconds": time.perf_counter() - wall_start, "iteration_log": log,
        "plan_deviations": sched.plan_deviations, "engine_preemptions": sched.engine_preemptions,
        "vllm_preemptions": dict(sched.vllm_preemptions),
    }
    ids = [r.id for r in instance.requests]
    schedule = sched.book.schedule([ids[i] for i in sorted(submitted)], iterations=len(sched.log), meta=meta)
    schedule.timelines = _with_never_released(ids, schedule.timelines, loop.never_released)
    returned = {r.id: engine.output_tokens.pop(r.id, None) for r in instance.requests}
    reasons = {r.id: engine.finish_reasons.pop(r.id, None) for r in instance.requests}
    for r in instance.requests:
        engine.outputs.pop(r.id, None)
    return VllmRun(instance, schedule, {"steps": len(sched.log), "start_seconds": engine.start_seconds,
                                        "output_tokens": returned, "finish_reasons": reasons})


class _ReleaseLoop:
    """When each request of a replay may be submitted: roots at their arrival, a DAG child when
    its last parent finishes, a conversation's later turn `think_time` after its previous turn
    finishes (formulations/turns.py). A request whose parent or previous turn was rejected is
    never released: it is rejected with it (`never_released`: request index -> time)."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        table = instance.table
        self.children: list[list[int]] = [[] for _ in range(len(table))]
        for i, parents in enumerate(table.parents):
            for p in parents.tolist():
                self.children[p].append(i)
        for turn in np.flatnonzero(table.after >= 0).tolist():
            self.children[int(table.after[turn])].append(turn)
        self.waiting_on = np.array([len(p) for p in table.parents]) + (table.after >= 0)
        self.finish = np.full(len(table), np.nan)
        self.never_released: dict[int, float] = {}
        self.pending = [(float(table.arrival[i]), i) for i in range(len(table)) if self.waiting_on[i] == 0]
        heapq.heapify(self.pending)

    def due(self, now: float) -> list[tuple[float, int]]:
        """(release, index) of every request released by `now`, in release order."""
        out = []
        while self.pending and self.pending[0][0] <= now + 1e-12:
            out.append(heapq.heappop(self.pending))
        return out

    def next_time(self) -> float:
        return self.pending[0][0]

    def finished(self, index: int, t: float) -> None:
        table, spec = self.instance.table, self.instance.engine
        self.finish[index] = t
        for child in self.children[index]:
            self.waiting_on[child] -= 1
            if self.waiting_on[child] == 0:
                if table.after[child] >= 0:
                    release = turn_release(t, float(table.think_time[child]), spec.slot_time)
                else:
                    release = max(float(table.arrival[child]), float(self.finish[table.parents[child]].max()))
                heapq.heappush(self.pending, (release, child))

    def rejected(self, index: int, t: float) -> None:
        stack = list(self.children[index])
        while stack:
            child = stack.pop()
            if child not in self.never_released:
                self.never_released[child] = t
                stack.extend(self.children[child])


def _with_never_released(ids: list[str], timelines: list[RequestTimeline], never: dict[int, float]) -> list[RequestTimeline]:
    """Timelines in instance order: the submitted ones, and for each never-released request one
    that says it was rejected with its parent or previous turn (release NaN, as the simulator's)."""
    by_id = {t.request_id: t for t in timelines}
    return [by_id.get(rid) or RequestTimeline(request_id=rid, release=float("nan"), rejected=never[i])
            for i, rid in enumerate(ids)]


@dataclass
class OwnSchedulerRun:
    """vLLM's own scheduler on a slotted clock: what it scheduled each step, and the outcome."""

    steps: list[tuple[int, dict[str, int]]]  # (slot, tokens scheduled per request id), steps that ran tokens
    finish_order: list[str]  # request ids in completion order (ties: by id)
    preemptions: dict[str, int]  # request id -> times vLLM preempted it
    hits_of: dict[str, int]  # request id -> prefix-cache hit tokens over its admissions


def external_id(request_id: str) -> str:
    """The id a request was submitted under (vLLM appends "-" and 8 random characters)."""
    return request_id.rsplit("-", 1)[0]


def scheduled_tokens(output) -> dict[str, int]:
    """Tokens a SchedulerOutput schedules per request, by submitted id."""
    return {external_id(rid): n for rid, n in output.num_scheduled_tokens.items()}


@contextmanager
def recorded_hits(scheduler) -> Iterator[dict[str, int]]:
    """Prefix-cache hit tokens of every admission while inside, per submitted id: what
    `allocate_slots` is given for the waiting requests it admits (wrapped, behaviour unchanged)."""
    manager = scheduler.kv_cache_manager
    allocate = manager.allocate_slots
    hits: dict[str, int] = {}

    def counting(request, num_new_tokens, num_new_computed_tokens=0, *args, **kwargs):
        got = allocate(request, num_new_tokens, num_new_computed_tokens, *args, **kwargs)
        if got is not None and num_new_computed_tokens:
            rid = external_id(request.request_id)
            hits[rid] = hits.get(rid, 0) + num_new_computed_tokens
        return got

    manager.allocate_slots = counting
    try:
        yield hits
    finally:
        del manager.allocate_slots


@contextmanager
def recorded_schedules(scheduler) -> Iterator[list]:
    """Every SchedulerOutput `scheduler.schedule()` returns while inside (the object is wrapped
    for the duration, its behaviour unchanged)."""
    schedule = scheduler.schedule
    outputs: list = []

    def recording(*args, **kwargs):
        out = schedule(*args, **kwargs)
        outputs.append(out)
        return out

    scheduler.schedule = recording
    try:
        yield outputs
    finally:
        del scheduler.schedule  # the instance attribute; the class's method is back


def run_own_scheduler(engine: VllmEngine, instance: Instance, slot_time: float) -> OwnSchedulerRun:
    """Drive an engine built with bridge=None (vLLM's unmodified scheduler) one step per slot.

    Requests are submitted at the first slot boundary at or after their release, as `replay`
    does: an arrival, or for a conversation's later turn its previous turn's finish plus the think
    time in whole slots (the closed loop: submitted only once that turn finished); an idle engine
    jumps to the next release. No DAG groups (vLLM's own scheduler has no use for their SLO).
    Prompts realize the instance's content ids (content_tokens.py), so vLLM's prefix cache sees
    the simulator's sharing; the cache is reset first (an earlier run's blocks would hit; after a
    reset no block carries a key, as in a fresh simulator pool, and their free-queue order is a
    relabelling that changes no hit or eviction).
    """
    if engine.bridge is not None:
        raise RuntimeError("run_own_scheduler needs an engine with vLLM's own scheduler (bridge=None)")
    if instance.groups:
        raise ValueError("run_own_scheduler: bulk groups (DAG releases) are not supported")
    if engine.busy() or not engine.llm.reset_prefix_cache():
        raise RuntimeError("run_own_scheduler: the engine must be idle")
    requests = instance.requests
    content = ContentTokens(instance, engine.vocab_size, engine.settings.seed)
    index = {r.id: i for i, r in enumerate(requests)}
    loop = _ReleaseLoop(instance)
    steps: list[tuple[int, dict[str, int]]] = []
    preemptions = {r.id: 0 for r in requests}
    finish: dict[str, int] = {}
    slot = submitted = 0
    with recorded_schedules(engine.scheduler) as outputs, recorded_hits(engine.scheduler) as hits:
        while submitted < len(requests) or engine.busy():
            for _, i in loop.due(slot * slot_time):
                engine.submit(requests[i].id, requests[i].prompt_len, requests[i].output_len, tokens=content.prompt(i))
                submitted += 1
            if not engine.busy():
                slot = int(np.ceil(loop.next_time() / slot_time - 1e-9))
                continue
            before = len(outputs)
            engine.step()
            for out in outputs[before:]:
                for rid in out.preempted_req_ids or ():
                    preemptions[external_id(rid)] += 1
                if out.num_scheduled_tokens:
                    steps.append((slot, scheduled_tokens(out)))
            for rid in engine.output_tokens:
                if rid not in finish:
                    finish[rid] = slot
                    content.finished(index[rid], engine.outputs[rid])
                    loop.finished(index[rid], (slot + 1) * slot_time)
            slot += 1
    for r in requests:
        engine.output_tokens.pop(r.id, None)
        engine.outputs.pop(r.id, None)
    return OwnSchedulerRun(steps, sorted(finish, key=lambda rid: (finish[rid], rid)), preemptions,
                           {r.id: hits.get(r.id, 0) for r in requests})
