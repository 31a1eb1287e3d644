"""A vLLM v1 scheduler that lets any slosched `Policy` decide every step (vLLM 0.32.0).

Load it with `scheduler_cls="engine_adapter.vllm_scheduler.SloScheduler"` (`--scheduler-cls`)
and settings in `additional_config={"slosched": {...}}` (engine_adapter/bridge_config.py);
per-request SLOs travel in `SamplingParams.extra_args["slosched"]` (engine_adapter/slo_args.py).

Every step it builds the plain `EngineView` from vLLM's own state (requests, computed and
generated tokens, KV blocks held and free, budgets), asks the policy for a `Plan`, works out the
batch by the engine rules (engine_adapter/plan_batch.py), and applies it with vLLM's own
mechanisms: `_preempt_request` for what must lose its KV, `running` and `waiting` holding just
the chosen requests in plan order (paused and held-back ones are set aside for the step). Then
vLLM's `schedule()` builds the batch as usual. `update_from_output` stamps every delivered token
on one clock, so the run yields the same `Schedule` as the simulator.

Only this module and the runner import vLLM; nothing else in slosched imports them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.core.sched.request_queue import SchedulingPolicy
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request, RequestStatus

from engine_adapter.bridge_config import BridgeConfig
from engine_adapter.plan_batch import decide_batch
from engine_adapter.request_book import RequestBook
from engine_adapter.slo_args import parse_slo_args
from formulations.engine_spec import EngineSpec
from formulations.latency_model import prefill_pairs
from formulations.online import Policy
from formulations.requests import CLASS_BY_CODE
from formulations.requests import Request as SloRequest
from formulations.requests import ValidationError

_REQUEST_ID = attrgetter("request_id")
_COMPUTED = attrgetter("num_computed_tokens")

# policy_seconds: all the bridge's own time in a step (view, decide, batch rules, applying the
# plan, restoring vLLM's queues, stamping tokens; not vLLM's own schedule/update); decide_seconds: the policy's decide() alone; step_seconds: schedule() to the end of
# update_from_output (the step as the engine core runs it).
LOG_KEYS = ("start", "end", "prefill_tokens", "prefill_pairs", "decode_seqs", "decode_ctx_tokens", "seqs", "tokens",
            "kv_used_blocks", "policy_seconds", "decide_seconds", "step_seconds")


@dataclass
class StepLog:
    """One row per step that ran tokens; `scheduled` holds the request indices of each."""

    rows: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in LOG_KEYS})
    scheduled: list[np.ndarray] = field(default_factory=list)

    def arrays(self) -> dict[str, object]:
        out: dict[str, object] = {k: np.array(v) for k, v in self.rows.items()}
        out["scheduled"] = list(self.scheduled)
        return out

    def __len__(self) -> int:
        return len(self.rows["start"])


class SloScheduler(Scheduler):
    """vLLM's scheduler with the batch chosen by a slosched policy."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._check_supported()
        self.configure(BridgeConfig.from_additional_config(self.vllm_config.additional_config))

    def configure(self, bridge: BridgeConfig, policy: Policy | None = None) -> None:
        """Take new settings (and optionally a policy object instead of `bridge.policy`: an
        in-process engine can be reused across policies); starts a fresh run. Only while idle."""
        if self.running or self.waiting:
            raise RuntimeError("SloScheduler.configure: requests are still live")
        self.bridge = bridge
        self.engine_spec = EngineSpec(
            kv_blocks=self.cache_config.num_gpu_blocks - 1,  # block 0 is vLLM's reserved null block
            latency=bridge.latency_model(), block_size=self.block_size,
            token_budget=self.max_num_scheduled_tokens, max_seqs=self.max_num_running_reqs,
            slot_time=bridge.slot_time, reserve_full_prompt=self.scheduler_reserve_full_isl,
            watermark=self.scheduler_config.watermark,
        )
        # not `self.policy`: that is vLLM's own SchedulingPolicy, read by its schedule()
        self.slo_policy = policy if policy is not None else bridge.make_policy()
        self.predictor = bridge.make_predictor()
        self.begin_run(time.perf_counter())

    def _check_supported(self) -> None:
        """Settings under which the plan's KV and token accounting would not hold."""
        problems = []
        if self.cache_config.enable_prefix_caching:
            problems.append("enable_prefix_caching must be False (prefix hits change KV accounting)")
        if self.scheduler_config.long_prefill_token_threshold:
            problems.append("long_prefill_token_threshold must be 0 (the plan chunks prefills)")
        if self.num_spec_tokens or self.num_lookahead_tokens:
            problems.append("speculative decoding is not supported")
        if self.policy != SchedulingPolicy.FCFS:
            problems.append("scheduling_policy must be 'fcfs' (the slosched policy orders requests)")
        if self.connector is not None:
            problems.append("KV connectors are not supported")
        if problems:
            raise ValidationError("SloScheduler: " + "; ".join(problems))

    # ---- run state ---------------------------------------------------------------------------
    def begin_run(self, origin: float) -> None:
        """Forget everything recorded so far; the clock reads 0 at perf_counter() == origin."""
        self.origin = origin
        self.slot = 0
        self.book = RequestBook(self.predictor.quantile_levels)
        self.row_of: dict[str, int] = {}  # vLLM request_id -> book row
        self.log = StepLog()
        self.newly_finished: list[tuple[int, float]] = []  # (request index, finish) since last taken
        self.plan_deviations = 0  # steps where vLLM ran a different batch than the plan's
        self.engine_preemptions = 0  # preemptions vLLM made on its own (should stay 0)
        self.vllm_preemptions: dict[int, int] = {}  # request index -> vLLM's own counter, at finish
        self.slo_policy.reset(self.engine_spec)
        self._step_start = 0.0
        self._step_now = 0.0
        self._policy_seconds = 0.0
        self._decide_seconds = 0.0
        self._planned = np.empty(0, dtype=np.int64)
        self._live: list[Request] = []  # the last step's live requests and their book rows
        self._live_rows = np.empty(0, dtype=np.int64)
        self._live_static: dict[str, np.ndarray] = {}

    def now(self) -> float:
        if self.bridge.slot_time is not None:
            return self.slot * self.bridge.slot_time
        return time.perf_counter() - self.origin

    def advance_to(self, t: float) -> None:
        """Slotted clock: an idle engine jumps to the first slot boundary >= t."""
        if self.bridge.slot_time is None:
            raise RuntimeError("advance_to is for the slotted clock (slot_time set)")
        self.slot = max(self.slot, int(np.ceil(t / self.bridge.slot_time - 1e-9)))

    # ---- hooks -------------------------------------------------------------------------------
    def add_request(self, request: Request) -> None:
        args = parse_slo_args(request.sampling_params.extra_args, request.request_id, self.now())
        if args.pred is not None:
            if args.levels != self.book.levels:
                raise ValidationError(f"request {args.id!r}: slosched.levels={list(args.levels)} differ from the "
                                      f"predictor's {list(self.book.levels)}")
            pred = args.pred
        else:
            pred = self.predictor.predict([self._as_slo_request(request, args)])[0]
        super().add_request(request)
        index = self.book.register(args, request.num_prompt_tokens, pred)
        self.row_of[request.request_id] = self.book.row(index)

    @staticmethod
    def _as_slo_request(request: Request, args) -> SloRequest:
        # Under ignore_eos the engine knows the output length (max_tokens); a predictor that
        # looks at it is the oracle, others look at the prompt length.
        return SloRequest(id=args.id, cls=CLASS_BY_CODE[args.cls], arrival=args.arrival,
                          prompt_len=request.num_prompt_tokens, output_len=request.max_tokens)

    def schedule(self, *args, **kwargs) -> SchedulerOutput:
        started = time.perf_counter()
        now = self.now()
        live = [*self.running, *self.waiting]
        if not live or self.kv_holding_waiting:
            return super().schedule(*args, **kwargs)
        n_running = len(self.running)
        view, rows = self._view(now, live, n_running)
        asked = time.perf_counter()
        plan = self.slo_policy.decide(view)
        self._decide_seconds = time.perf_counter() - asked
        decision = decide_batch(view, plan, self.book.admitted_at[rows])

        for k in decision.preempt:
            request = live[k]
            self.running.remove(request)
            self._preempt_request(request, time.monotonic())
            self.book.preempted(int(rows[k]), now)
        # live[:n_running] were running; a request the batch rules preempted is not in decision.run
        run_resident = [live[k] for k, _ in decision.run if k < n_running]
        admit = [live[k] for k, _ in decision.run if k >= n_running]
        planned = {live[k].request_id: tokens for k, tokens in decision.run}
        keep = set(run_resident)
        paused = [r for r in self.running if r not in keep]
        admit_set = set(admit)
        held = [r for r in self.waiting if r not in admit_set]
        self.running[:] = run_resident
        self.waiting.clear()
        self.waiting.extend(admit)
        self._planned = self.book.index[rows[[k for k, _ in decision.run]]]
        self._policy_seconds = time.perf_counter() - started

        output = super().schedule(*args, **kwargs)

        resumed = time.perf_counter()
        self.running.extend(paused)
        left = list(self.waiting)
        self.waiting.clear()
        self.waiting.extend(left + held)
        for request in run_resident:
            if request.status == RequestStatus.PREEMPTED:  # vLLM preempted on its own
                self.engine_preemptions += 1
                self.book.preempted(self.row_of[request.request_id], now)
        for request in admit:
            if request.status == RequestStatus.RUNNING:
                self.book.admitted(self.row_of[request.request_id], now)
        if output.num_scheduled_tokens != planned:
            self.plan_deviations += 1
        self._step_start = started
        self._step_now = now
        self._policy_seconds += time.perf_counter() - resumed
        return output

    def _view(self, now: float, live: list[Request], n_running: int):
        """live = running requests (resident: they hold KV) followed by waiting ones. Only the
        computed-token count is read from vLLM; generated tokens and preemptions are the book's own
        counts (equal to vLLM's: the integration tests check it), prompt lengths never change."""
        n = len(live)
        if live == self._live:  # (identity comparisons) the live set and order rarely change
            rows, static = self._live_rows, self._live_static
        else:
            rows = np.fromiter(map(self.row_of.__getitem__, map(_REQUEST_ID, live)), dtype=np.int64, count=n)
            static = self.book.static_columns(rows)
            self._live, self._live_rows, self._live_static = live, rows, static
        computed = np.fromiter(map(_COMPUTED, live), dtype=np.int64, count=n)
        generated = self.book.delivered[rows]
        preemptions = self.book.preemption_count[rows]
        total = static["prompt_len"] + generated  # = num_tokens (no speculative tokens)
        resident = np.arange(n) < n_running
        decoding = (generated > 0) & (computed >= total - 1)
        prefill_left = np.where(decoding, 0, total - computed)
        kv_blocks = np.where(resident, -(-computed // self.block_size), 0)
        pred = self.predictor.refine(self.book.pred[rows], generated)
        view = self.book.view(
            now=now, rows=rows, generated=generated, computed=computed, prefill_left=prefill_left,
            resident=resident, kv_blocks=kv_blocks, preemptions=preemptions, pred_quantiles=pred,
            free_blocks=self.kv_cache_manager.block_pool.get_num_free_blocks(), engine=self.engine_spec, static=static,
        )
        return view, rows

    def update_from_output(self, scheduler_output: SchedulerOutput, model_runner_output):
        if self.bridge.slot_time is not None:
            t = (self.slot + 1) * self.bridge.slot_time
        else:
            t = self.now()
        entered = time.perf_counter()
        requests = self.requests
        ran = [(requests[rid], n) for rid, n in scheduler_output.num_scheduled_tokens.items() if rid in requests]
        before = [r.num_output_tokens for r, _ in ran]
        own = time.perf_counter() - entered
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        resumed = time.perf_counter()
        single = []
        for (request, _), count in zip(ran, before, strict=True):
            row = self.row_of[request.request_id]
            delivered = request.num_output_tokens - count
            if delivered == 1:
                single.append(row)
            elif delivered > 1:
                self.book.tokens(row, delivered, t)
            if request.is_finished():
                self.book.finished(row, t)
                index = int(self.book.index[row])
                self.newly_finished.append((index, t))
                self.vllm_preemptions[index] = request.num_preemptions
        if single:
            self.book.one_token_each(np.array(single, dtype=np.int64), t)
        if ran:
            self._policy_seconds += own + time.perf_counter() - resumed
            self._log_step(ran, t)
        if self.bridge.slot_time is not None:
            self.slot += 1
        return outputs

    def _log_step(self, ran: list[tuple[Request, int]], t: float) -> None:
        prefill = pairs = decodes = ctx = 0
        for request, n in ran:
            # num_computed_tokens was advanced by n when the step was scheduled
            start = request.num_computed_tokens - n
            if n == 1 and request.num_output_tokens > 1 and start == request.num_tokens - 2:
                decodes += 1
                ctx += start + 1
            else:
                prefill += n
                pairs += prefill_pairs(start, n)
        log = self.log.rows
        log["start"].append(self._step_now)
        log["end"].append(t)
        log["prefill_tokens"].append(prefill)
        log["prefill_pairs"].append(pairs)
        log["decode_seqs"].append(decodes)
        log["decode_ctx_tokens"].append(ctx)
        log["seqs"].append(len(ran))
        log["tokens"].append(prefill + decodes)
        log["kv_used_blocks"].append(self.engine_spec.kv_blocks - self.kv_cache_manager.block_pool.get_num_free_blocks())
        log["policy_seconds"].append(self._policy_seconds)
        log["decide_seconds"].append(self._decide_seconds)
        log["step_seconds"].append(time.perf_counter() - self._step_start)
        self.log.scheduled.append(self._planned)  # request indices in plan (priority) order
