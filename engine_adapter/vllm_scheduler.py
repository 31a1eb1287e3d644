"""A vLLM v1 scheduler that lets any slosched `Policy` choose each step's batch (vLLM 0.32.0).

Load it with `scheduler_cls="engine_adapter.vllm_scheduler.SloScheduler"` (`--scheduler-cls`)
and settings in `additional_config={"slosched": {...}}` (engine_adapter/bridge_config.py);
per-request SLOs travel in `SamplingParams.extra_args["slosched"]` (engine_adapter/slo_args.py).

Every step it builds the `EngineView` from columns it keeps per request in its `RequestBook`,
updated by its hooks as vLLM's state changes (computed tokens after each schedule, delivered
tokens, preemptions; tests/test_vllm_incremental.py checks them against vLLM's own state at every
step), with vLLM's free blocks and budgets; columns only some policies read (predictions, reading
lag) are filled in when read. It asks the policy for a `Plan` only at the
simulator's events (engine_adapter/events.py: an arrival or release, a completion, a prefill
end, an eviction by the KV rule, KV exhaustion after a steady decode run, an idle step, the
plan's `recheck_at`); in between it holds the last plan's run set (minus requests that left), so
a policy whose answer moves with time is asked at the same moments as in the simulator. It
works out the batch by the engine rules (engine_adapter/plan_batch.py), and applies it with vLLM's own
mechanisms: `_preempt_request` for what must lose its KV, `running` and `waiting` holding just
the chosen requests in plan order (paused and held-back ones are set aside for the step). Then
vLLM's `schedule()` builds the batch as usual. `update_from_output` stamps every delivered token
on one clock, so the run yields the same `Schedule` as the simulator.

Only the engine_adapter/vllm_*.py modules import vLLM; nothing else in slosched imports them.
"""

from __future__ import annotations

import copy
import time
from operator import attrgetter, not_
from dataclasses import dataclass, field, fields, replace
from itertools import compress, repeat

import numpy as np
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.core.sched.request_queue import SchedulingPolicy
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.engine import EngineCoreOutput, EngineCoreOutputs, FinishReason
from vllm.v1.request import Request, RequestStatus

from engine_adapter.bridge_config import BridgeConfig
from engine_adapter.events import HeldPlan, is_steady_batch, prefill_event
from engine_adapter.plan_batch import BatchDecision, batch_at, decide_batch, plan_columns
from engine_adapter.request_book import RequestBook
from engine_adapter.simulator import SimulationStalled, simulate
from engine_adapter.simulator.view import LazyView
from engine_adapter.slo_args import GroupSpec, SloArgs, parse_slo_args
from engine_adapter.vllm_checks import kv_cache_problems, unsupported_settings
from engine_adapter.vllm_prefix_hits import PrefixLookup, may_hit
from engine_adapter.vllm_kernel_scan import skip_llvmlite_in_kernel_scan
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import prefill_pairs
from formulations.online import EngineView, Plan, Policy
from formulations.requests import CLASS_BY_CODE, Group, RequestClass
from formulations.requests import Request as SloRequest
from formulations.requests import ValidationError
from solvers.compiled import kernel
from solvers.policies.signals import blocks_for_at

skip_llvmlite_in_kernel_scan()  # an engine core process may load the policies before its workers start

# policy_seconds: all the bridge's own time in a step (view, decide, batch rules, applying the
# plan, restoring vLLM's queues, stamping tokens; not vLLM's own schedule/update); decide_seconds: the policy's decide() alone; step_seconds: schedule() to the end of
# update_from_output (the step as the engine core runs it).
LOG_KEYS = ("start", "end", "prefill_tokens", "prefill_pairs", "decode_seqs", "decode_ctx_tokens", "seqs", "tokens",
            "kv_used_blocks", "policy_seconds", "decide_seconds", "step_seconds")


@dataclass
class StepLog:
    """One entry per step that ran tokens: its LOG_KEYS values (a tuple, so that a step's log is one
    append) and the request indices it scheduled; `arrays()` gives the columns."""

    entries: list[tuple] = field(default_factory=list)
    scheduled: list[np.ndarray] = field(default_factory=list)

    def append(self, values: tuple, scheduled: np.ndarray) -> None:
        self.entries.append(values)
        self.scheduled.append(scheduled)

    def arrays(self) -> dict[str, object]:
        columns = zip(*self.entries, strict=True) if self.entries else ((),) * len(LOG_KEYS)
        out: dict[str, object] = {k: np.array(c) for k, c in zip(LOG_KEYS, columns, strict=True)}
        out["scheduled"] = list(self.scheduled)
        return out

    def __len__(self) -> int:
        return len(self.entries)


@dataclass
class _StepRecord:
    """What a step's log row knows when it is scheduled; completed when its output comes back
    (under async scheduling the next step is scheduled before that)."""

    start: float
    began: float  # perf_counter() at schedule()
    prefill: int
    pairs: int
    decodes: int
    ctx: int
    seqs: int
    planned: np.ndarray
    policy_seconds: float
    decide_seconds: float


class SloScheduler(Scheduler):
    """vLLM's scheduler with the batch chosen by a slosched policy.

    Built where vLLM runs async (scheduler_config.async_scheduling, vLLM's default on GPUs), it is
    an `AsyncSloScheduler` (engine_adapter/vllm_async.py): the same bridge on vLLM's AsyncScheduler."""

    def __new__(cls, *args, **kwargs):
        config = kwargs.get("vllm_config", args[0] if args else None)
        if cls is SloScheduler and config is not None and config.scheduler_config.async_scheduling:
            from engine_adapter.vllm_async import AsyncSloScheduler

            cls = AsyncSloScheduler
        return super().__new__(cls)

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
            enable_prefix_caching=bool(self.cache_config.enable_prefix_caching),
        )
        # not `self.policy`: that is vLLM's own SchedulingPolicy, read by its schedule()
        self.slo_policy = policy if policy is not None else bridge.make_policy()
        self.predictor = bridge.make_predictor()
        self._warm_up()
        self.begin_run(time.perf_counter())

    def _check_supported(self) -> None:
        """Settings under which the plan's KV and token accounting would not hold."""
        problems = []
        if self.scheduler_config.long_prefill_token_threshold:
            problems.append("long_prefill_token_threshold must be 0 (the plan chunks prefills)")
        if self.num_spec_tokens or self.num_lookahead_tokens:
            problems.append("speculative decoding is not supported")
        if self.policy != SchedulingPolicy.FCFS:
            problems.append("scheduling_policy must be 'fcfs' (the slosched policy orders requests)")
        if self.connector is not None:
            problems.append("KV connectors are not supported")
        problems += unsupported_settings(self.vllm_config) + kv_cache_problems(self.kv_cache_config)
        if problems:
            raise ValidationError(f"{type(self).__name__}: " + "; ".join(problems))

    # ---- run state ---------------------------------------------------------------------------
    def begin_run(self, origin: float) -> None:
        """Forget everything recorded so far; the clock reads 0 at perf_counter() == origin."""
        self.origin = origin
        self.slot = 0
        self.book = RequestBook(self.predictor.quantile_levels)
        self.row_of: dict[str, int] = {}  # vLLM request_id -> book row
        self._request_of: dict[str, Request] = {}
        # id(request) -> book row, for the requests in _request_of (which keeps them alive, so
        # no id is reused meanwhile): a live request's row without reading the request object
        self._row_by_id: dict[int, int] = {}
        self.log = StepLog()
        self.newly_finished: list[tuple[int, float]] = []  # (request index, finish) since last taken
        self._rejected: list[Request] = []  # aborted by Plan.reject, not yet reported to their clients
        self.plan_deviations = 0  # steps where vLLM ran a different batch than the plan's
        self.engine_preemptions = 0  # preemptions vLLM made on its own (should stay 0)
        self.vllm_preemptions: dict[int, int] = {}  # request index -> vLLM's own counter, at finish
        self.slo_policy.reset(self.engine_spec)
        self.held = HeldPlan()
        self._pending: dict[int, _StepRecord] = {}  # id(SchedulerOutput) -> its step, until its output
        self._live: list[Request] = []  # the last step's live requests, their book rows and static columns
        self._live_rows = np.empty(0, dtype=np.int64)
        self._live_static: dict[str, np.ndarray] = {}
        self._prefix = PrefixLookup(self.kv_cache_manager, self.block_size) if self.cache_config.enable_prefix_caching \
            else None  # each waiting request's prefix-cache hit, with prefix caching

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
    def has_request(self, request_id: str) -> bool:
        """vLLM 0.33's SchedulerInterface.has_request (0.32 does not call it)."""
        return request_id in self.requests

    def add_request(self, request: Request) -> None:
        args = parse_slo_args(request.sampling_params.extra_args, request.request_id, self.now())
        if args.pred is not None:
            # a client's quantiles at other levels than the predictor's are read off its quantile
            # function (linear between its levels, its end values beyond them): the frontend has
            # no access to the predictor's levels, and raising here would stop the engine core
            pred = args.pred if args.levels == self.book.levels else np.interp(self.book.levels, args.levels, args.pred)
        else:
            pred = self.predictor.predict([self._as_slo_request(request, args)])[0]
        super().add_request(request)
        self.held.event = True  # an arrival or release
        index = self.book.register(args, request.num_prompt_tokens, pred)
        row = self.row_of[request.request_id] = self._row_by_id[id(request)] = self.book.row(index)
        if self._prefix is not None:
            self._prefix.register(row, request)
        self._request_of[request.request_id] = request  # until it finishes (vLLM forgets it then)

    @staticmethod
    def _as_slo_request(request: Request, args) -> SloRequest:
        # Under ignore_eos the engine knows the output length (max_tokens); a predictor that
        # looks at it is the oracle, others look at the prompt length.
        return SloRequest(id=args.id, cls=CLASS_BY_CODE[args.cls], arrival=args.arrival,
                          prompt_len=request.num_prompt_tokens, output_len=request.max_tokens)

    def _resident(self) -> list[Request]:
        """The running requests the plan may run this step (all of them, without async)."""
        return self.running

    def _in_flight(self, live: list[Request]) -> np.ndarray:
        """Output tokens scheduled but not yet returned, per live request (none without async)."""
        return np.zeros(len(live), dtype=np.int64)

    def schedule(self, throttle_prefills: bool = False) -> SchedulerOutput:
        """`throttle_prefills` (DP prefill balancing) is never set: construction refuses the
        settings that set it (prefill_schedule_interval > 1)."""
        started = time.perf_counter()
        now = self.now()
        resident = self._resident()
        live = [*resident, *self.waiting]
        if not live or self.kv_holding_waiting:
            self.held.event = True  # nothing for the plan to run: idle
            output = super().schedule(throttle_prefills)
            self._record(output, started, now, np.empty(0, dtype=np.int64), 0.0, 0.0)
            return output
        n_running = len(resident)
        view, rows, hits_now = self._view(now, live, n_running)
        decide_seconds = 0.0
        decision = None
        if not self.held.due(now):  # between events: the held plan's run set, by the same rules
            decision = self._batch(view, self.held.run_columns(view.idx), _EMPTY, live, n_running, rows, hits_now)
            if decision.preempt and self.held.steady:  # KV exhausted after a steady run: an event
                decision = None
        plan_preempts = 0
        if decision is None:
            asked = time.perf_counter()
            plan = self.slo_policy.decide(view)
            decide_seconds = time.perf_counter() - asked
            self.held.decided(plan)
            if len(plan.reject):  # rule 0: rejected requests leave first; the rest of the plan applies as is
                live, n_running = self._reject(plan.reject, live, rows, now)
                if not live:
                    self.held.event = True  # nothing runs: idle
                    output = super().schedule(throttle_prefills)
                    self._record(output, started, now, np.empty(0, dtype=np.int64), 0.0, decide_seconds)
                    return output
                view, rows, hits_now = self._view(now, live, n_running)
            run, preempt = plan_columns(view.idx, plan)
            plan_preempts = len(preempt)
            decision = self._batch(view, run, preempt, live, n_running, rows, hits_now)
        for k in decision.preempt:
            request = live[k]
            self.running.remove(request)
            self._preempt_request(request, time.monotonic())
            self.book.preempted(int(rows[k]), now)
        # live[:n_running] were running; a request the batch rules preempted is not in decision.run
        run_arr = decision.run
        run = run_arr.tolist()
        run_resident = [live[k] for k in run if k < n_running]
        any_prefill = self._note_batch(decision, plan_preempts, len(run_resident) == len(run))
        if hits_now is None:
            admit = [live[k] for k in run if k >= n_running]
        else:  # vLLM admits as the simulator's PrefixCache.allocate does, from the plan's waiting ones
            admit = [live[k] for k in decision.admit_from]
        # the running order before the plan, kept after the step (the plan's order matters to vLLM's
        # schedule only), so the live order, and with it the view's rows, changes only as requests
        # come and go
        before = list(self.running)
        if admit:
            admitting = set(map(id, admit)).__contains__
            # (C-level iterators rather than a Python loop over every waiting request)
            held = list(compress(self.waiting, map(not_, map(admitting, map(id, self.waiting)))))
        else:  # (no set test per waiting request: most steps admit nothing)
            held = list(self.waiting)
        self.running[:] = run_resident
        self.waiting.clear()
        self.waiting.extend(admit)
        planned_indices = view.idx[run_arr]
        policy_seconds = time.perf_counter() - started

        output = super().schedule(throttle_prefills)

        resumed = time.perf_counter()
        left = list(self.waiting)
        self.waiting.clear()
        self.waiting.extend(left + held)
        admitted = admit
        if not left:  # vLLM ran the plan's residents and admitted every one asked (appended to running)
            self.running[:] = before + admit
        else:  # the plan's admissions vLLM did not make, and running requests vLLM preempted on its own
            self.running.extend(self._paused(before, run_resident))
            asked_in = set(map(id, admit))
            left_ids = set(map(id, left))
            admitted = [r for r in admit if id(r) not in left_ids]
            for request in left:
                if id(request) not in asked_in and request.status == RequestStatus.PREEMPTED:
                    self.engine_preemptions += 1
                    self.held.event = True
                    self.book.preempted(self.row_of[request.request_id], now)
        for request in admitted:
            self.book.admitted(self.row_of[request.request_id], now)
        candidates, cand_tokens = run_arr, decision.tokens
        if decision.admit_from:  # waiting ones past the planned run that vLLM may still admit at their turn
            in_run = set(run)
            extra = np.array([k for k in decision.admit_from if k not in in_run], dtype=np.int64)
            candidates = np.concatenate([run_arr, extra])
            cand_tokens = np.concatenate([decision.tokens, np.full(len(extra), -1, dtype=np.int64)])
        counts, got, deviates = self._after_schedule(output, admitted, rows, candidates, cand_tokens, n_running)
        if deviates:
            self.plan_deviations += 1
        if not output.num_scheduled_tokens:
            self.held.event = True  # idle
        elif any_prefill:  # only decodes: no prefill can end
            self._note_prefill_ends(view, rows, candidates, got)
        self._open_log_row(output, started, now, planned_indices, counts,
                           policy_seconds + time.perf_counter() - resumed, decide_seconds)
        return output

    @staticmethod
    def _paused(running: list[Request], run_resident: list[Request]) -> list[Request]:
        """The `running` requests the plan did not run this step (set aside while vLLM scheduled)."""
        keep = set(run_resident)
        return [r for r in running if r not in keep]

    def _batch(self, view, run: np.ndarray, preempt: np.ndarray, live: list[Request], n_running: int,
               rows: np.ndarray, hits_now: tuple[dict[int, list], np.ndarray] | None) -> BatchDecision:
        """The plan rules' batch for the view columns `run` with `preempt` preempted first;
        `hits_now`: with prefix caching, the waiting requests' hits (PrefixLookup.hits)."""
        hits = None if hits_now is None else self._prefix.after(live, n_running, *hits_now, view.kv_blocks,
                                                                int(view.free_blocks))
        return batch_at(view, run, preempt, self.book.admitted_at[rows], hits)

    def _note_batch(self, decision: BatchDecision, plan_preempts: int, all_resident: bool) -> bool:
        """Events this step's batch makes (engine_adapter/events.py): an eviction by the KV rule,
        an empty batch; and whether it is steady (`all_resident`: every request it runs was
        running). Returns whether it prefills (or may: waiting ones vLLM admits itself)."""
        victims = len(decision.preempt) > plan_preempts
        if victims or not len(decision.run):
            self.held.event = True
        any_prefill = bool(decision.admit_from) or decision.any_prefill
        self.held.steady = is_steady_batch(victims, any_prefill, all_resident)
        return any_prefill

    def _note_prefill_ends(self, view, rows: np.ndarray, candidates: np.ndarray, got: np.ndarray) -> None:
        """A prefill that ended in this step (or a recompute left with its last output token) is
        an event; read from the computed tokens vLLM left after scheduling (the book's copy, just
        updated), which count prefix hits. `got`: the tokens vLLM scheduled per candidate (view
        columns `candidates`, book `rows` per column), -1 none."""
        if _prefill_ended(rows, candidates, got, view.prefill_left, view.computed, view.generated, self.book.computed):
            self.held.event = True

    def _reject(self, indices: np.ndarray, live: list[Request], rows: np.ndarray,
                now: float) -> tuple[list[Request], int]:
        """Abort the requests a plan rejects (vLLM frees their blocks); their clients get finish
        reason "abort" with the next step's outputs. Returns the live requests left."""
        named = set(indices.tolist())
        gone = [r for r, i in zip(live, self.book.index[rows].tolist(), strict=True) if i in named]
        self.finish_requests([r.request_id for r in gone], RequestStatus.FINISHED_ABORTED)
        for request in gone:
            self.book.reject(self.row_of[request.request_id], now)
        self._rejected.extend(gone)
        resident = self._resident()
        return [*resident, *self.waiting], len(resident)

    def _report_rejected(self, outputs: dict[int, EngineCoreOutputs]) -> None:
        """Tell the clients of rejected requests, as vLLM tells those it finishes with an error."""
        for request in self._rejected:
            outputs.setdefault(request.client_index, EngineCoreOutputs()).outputs.append(EngineCoreOutput(
                request_id=request.request_id, new_token_ids=[], finish_reason=FinishReason.ABORT))
            if self._request_of.pop(request.request_id, None) is not None:
                del self._row_by_id[id(request)]
        self._rejected.clear()

    def _after_schedule(self, output: SchedulerOutput, admitted: list[Request] | None, rows: np.ndarray,
                        candidates: np.ndarray, cand_tokens: np.ndarray,
                        n_resident: int) -> tuple[tuple[int, int, int, int], np.ndarray, bool]:
        """After vLLM's schedule(): the book's computed tokens of the scheduled requests (what
        vLLM's num_computed_tokens now reads: the count before plus the tokens scheduled, read
        back only for the requests just `admitted`, whose prefix-cache hits count too; None:
        read back every scheduled one), the step's log counts (prefill tokens and attention pairs,
        decodes and their context), the tokens vLLM scheduled per candidate (-1: none) and
        whether vLLM deviated from them (engine_adapter/plan_batch.py's candidates, as view
        columns of the book `rows`, the first `n_resident` resident: the planned run with
        `cand_tokens`, then waiting ones vLLM may admit itself with -1). Columns at once
        rather than a loop over the scheduled requests: each request object read costs a cache
        miss after a model step."""
        scheduled = output.num_scheduled_tokens
        m = len(scheduled)
        srows = np.fromiter(map(self.row_of.__getitem__, scheduled), dtype=np.int64, count=m)
        tokens = np.fromiter(scheduled.values(), dtype=np.int64, count=m)
        read = list(map(self.requests.__getitem__, scheduled)) if admitted is None else admitted
        read_rows = np.fromiter(map(self._row_by_id.__getitem__, map(id, read)), dtype=np.int64, count=len(read))
        read_computed = np.fromiter(map(_computed_tokens, read), dtype=np.int64, count=len(read))
        prefill, pairs, decodes, ctx, got, deviates = _step_columns(
            srows, tokens, read_rows, read_computed, self.book.computed, self.book.prompt_len, rows, candidates,
            cand_tokens, n_resident, not self.cache_config.enable_prefix_caching)
        return (prefill, pairs, decodes, ctx), got, deviates

    def _record(self, output: SchedulerOutput, began: float, now: float, planned: np.ndarray, policy_seconds: float,
                decide_seconds: float) -> None:
        """The book's computed tokens and the log row of a step scheduled without a plan."""
        entered = time.perf_counter()
        counts = self._after_schedule(output, None, _EMPTY, _EMPTY, _EMPTY, 0)[0]
        self._open_log_row(output, began, now, planned, counts, policy_seconds + time.perf_counter() - entered,
                           decide_seconds)

    def _open_log_row(self, output: SchedulerOutput, began: float, now: float, planned: np.ndarray,
                      counts: tuple[int, int, int, int], policy_seconds: float, decide_seconds: float) -> None:
        """Open the log row of the step just scheduled; completed when its output comes back."""
        if not output.num_scheduled_tokens:
            return
        prefill, pairs, decodes, ctx = counts
        self._pending[id(output)] = _StepRecord(now, began, prefill, pairs, decodes, ctx,
                                                len(output.num_scheduled_tokens), planned, policy_seconds, decide_seconds)

    def _view(self, now: float, live: list[Request], n_running: int):
        """live = running requests (resident: they hold KV) followed by waiting ones. Every column
        is the book's, kept up to date by the hooks (computed tokens as vLLM left them after
        each schedule, generated tokens and preemptions as delivered and made), so nothing is
        read back from the requests; the live rows and their static columns are rebuilt only
        when the live set or its order changed."""
        n = len(live)
        if live != self._live:  # (identity comparisons)
            # by identity: reading each request's id from the object costs a cache miss per
            # request after a model step (measured 0.1-0.2 ms at 256 live requests)
            rows = np.fromiter(map(self._row_by_id.__getitem__, map(id, live)), dtype=np.int64, count=n)
            self._live, self._live_rows = live, rows
            self._live_static = self.book.static_columns(rows)
        rows = self._live_rows
        hits_now = None
        if self._prefix is not None:
            hits_now = self._prefix.hits(live, rows, n_running, self.book.preemption_count)
        view = self._book_view(self.book, now, rows, self._live_static, n_running, self._in_flight(live),
                               self.kv_cache_manager.block_pool.get_num_free_blocks(),
                               None if hits_now is None else hits_now[1])
        return view, rows, hits_now

    def _book_view(self, book: RequestBook, now: float, rows: np.ndarray, static: dict[str, np.ndarray],
                   n_resident: int, in_flight: np.ndarray, free_blocks: int, cached: np.ndarray | None):
        """The view of `book`'s `rows`, the first `n_resident` of them resident (their static
        columns kept), progress from the book's counts."""
        computed, generated, prefill_left, resident, kv_blocks, preemptions = _progress(
            rows, n_resident, static["prompt_len"], book.computed, book.delivered, book.preemption_count, in_flight,
            self.block_size)
        return book.view(
            now=now, rows=rows, generated=generated, computed=computed, prefill_left=prefill_left, resident=resident,
            kv_blocks=kv_blocks, preemptions=preemptions, refine_rows=self.predictor.refine_rows,
            free_blocks=free_blocks, engine=self.engine_spec, static=static, cached=cached,
        )

    def _warm_up(self) -> None:
        """Ask the policy and apply the batch rules (and the bridge's own kernels: the step's columns,
        the prefill ends, the held plan's run set) on synthetic views, so that numba's compiled
        rules are loaded from its disk cache (or compiled) here rather than in a run, which a load
        stalled by 5-40 ms and a compile (a fresh cache) by seconds. numba compiles one version per
        argument type, and a column's type depends on the data: a single live request's columns are
        contiguous where several requests' are strided; bulk members not yet released (DAG children)
        add a table whose layout differs with one member and with several. So the views cover:
        latency and throughput requests with and without a bulk group and DAG children not yet
        released; running and waiting ones; a KV shortage and KV to spare; one live request alone;
        past every deadline, requests a policy gives up on (asked twice: the second decision sees
        them given up); and an overload (more work arriving at once than the engine serves). Then
        the policy runs a short simulated overload (_warm_up_instance) on views typed as the
        bridge's (_AsBridgeViews): the paths a policy takes only in a run's course (evictions,
        rejections, DAG children released) are reached there whatever the policy's internals. All on
        a copy of the policy: its compiled rules are the same (module-level), and the run's policy
        is left as it was."""
        group = GroupSpec(id="warm-up", members=(2, 3), parents=((), ()), prompt_len=(64, 64), deadline=60.0)
        dag = GroupSpec(id="warm-up-dag", members=(4, 5, 6), parents=((), (4,), (4,)), prompt_len=(64, 64, 64),
                        deadline=60.0)
        plain = ((0, None), (1, None))
        scenarios = (  # (kinds, resident requests, free blocks, now, decisions)
            (plain * 3, 3, 0, 1.0, 1),
            (plain + ((2, group), (2, group)) + plain, 3, 0, 1.0, 1),
            (plain * 2 + ((2, dag),), 2, 0, 1.0, 1),  # requests 5 and 6, the DAG's children, are not released
            (plain * 3, 3, 64, 1.0, 1),
            (((0, None),), 1, 0, 1.0, 1),
            (((1, None),), 0, 64, 1.0, 1),
            (plain * 2 + ((2, dag),), 2, 0, 1000.0, 2),
            (plain * 32, 16, 0, 1.0, 1),  # more work at once than the engine serves: overload
        )
        policy = copy.deepcopy(self.slo_policy)  # the same compiled rules; the run's policy keeps its state
        policy.reset(self.engine_spec)
        for kinds, resident, free, now, decisions in scenarios:
            keep = np.ones(len(kinds), dtype=bool)
            for _ in range(decisions):
                book, view = self._synthetic_view(kinds, resident, free, now, keep)
                plan = policy.decide(view)
                if len(plan.reject):  # as the bridge goes on: the requests left (index = row here)
                    keep[plan.reject] = False
                    if not keep.any():
                        break
                    book, view = self._synthetic_view(kinds, resident, free, now, keep)
                rows = np.flatnonzero(keep)
                for p in (replace(plan, reject=_EMPTY), Plan(run=view.idx)):
                    decision = decide_batch(view, p, book.admitted_at[rows])
                    _after_schedule_kernels(view, decision, rows, book.computed.copy(), book.prompt_len)
                HeldPlan(plan).run_columns(view.idx)
        if self.cache_config.enable_prefix_caching:  # (rows as the view's: a slice of the live rows)
            may_hit(np.zeros(4, dtype=bool), np.zeros(4, dtype=np.int64), np.arange(4, dtype=np.int64)[1:])
        try:  # (a predictor of its own: one may draw from a random stream)
            simulate(_warm_up_instance(self.engine_spec),
                     _AsBridgeViews(policy, bool(self.cache_config.enable_prefix_caching)),
                     self.bridge.make_predictor())
        except SimulationStalled:  # a policy that holds everything back there: what it reached is loaded
            pass

    def _synthetic_view(self, kinds: tuple, resident: int, free_blocks: int, now: float,
                        keep: np.ndarray | None = None) -> tuple[RequestBook, object]:
        """A book of requests of `kinds` ((class code, group or None) each) with a 64-token
        prompt, the first `resident` decoding at a block boundary (each needs a block), the rest
        waiting; and the view at `now` of those of them in `keep` (default: all)."""
        book = RequestBook(self.predictor.quantile_levels)
        for i, (cls, group) in enumerate(kinds):
            args = SloArgs(i, f"warm-up-{i}", cls, 0.0, 0.0, 1.0, 30.0, 60.0, group, (), None, None)
            book.register(args, 64, np.full(len(book.levels), 32.0))
        n = len(kinds)
        rows = np.arange(n, dtype=np.int64)
        running = rows < resident
        book.one_token_each(rows[running], 0.5)
        book.computed[rows[running]] = 64
        if keep is not None:
            rows, running = rows[keep], running[keep]
        n = len(rows)
        cached = np.zeros(n, dtype=np.int64) if self.cache_config.enable_prefix_caching else None
        view = self._book_view(book, now, rows, book.static_columns(rows), int(np.count_nonzero(running)),
                               np.zeros(n, dtype=np.int64), free_blocks, cached)
        return book, view

    def update_from_output(self, scheduler_output: SchedulerOutput, model_runner_output):
        """Stamp the tokens vLLM delivered (its EngineCoreOutputs: new tokens and finish per request)."""
        if self.bridge.slot_time is not None:
            t = (self.slot + 1) * self.bridge.slot_time
        else:
            t = self.now()
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        resumed = time.perf_counter()
        row_of, book = self.row_of, self.book
        for engine_outputs in outputs.values():
            outs = engine_outputs.outputs
            # a column per field (C-level maps) rather than a loop over the outputs: reading each
            # output object in Python costs a cache miss and an interpreter round trip
            # (row -1: an output of a request not added through add_request, not the bridge's)
            rows = np.fromiter(map(row_of.get, map(_request_id, outs), repeat(-1)), dtype=np.int64, count=len(outs))
            book.deliver(rows, np.fromiter(map(len, map(_new_token_ids, outs)), dtype=np.int64, count=len(outs)), t)
            reasons = list(map(_finish_reason, outs))
            if reasons.count(None) < len(reasons):
                for k, reason in enumerate(reasons):
                    if reason is not None and rows[k] >= 0:
                        self._finished(int(rows[k]), outs[k].request_id, t)
        if self._rejected:  # after the loop: a rejection is not a finish
            self._report_rejected(outputs)
        record = self._pending.pop(id(scheduler_output), None)
        if record is not None:  # the step ran tokens (their requests may have finished since)
            self._log_step(record, t, resumed)
        if self.bridge.slot_time is not None:
            self.slot += 1
        return outputs

    def _finished(self, row: int, request_id: str, t: float) -> None:
        self.held.event = True  # a completion
        self.book.finished(row, t)
        index = int(self.book.index[row])
        self.newly_finished.append((index, t))
        request = self._request_of.pop(request_id)
        del self._row_by_id[id(request)]
        self.vllm_preemptions[index] = request.num_preemptions

    def _log_step(self, record: _StepRecord, t: float, resumed: float) -> None:
        """The step's log row; its policy seconds count the bridge's time since `resumed` (the end
        of vLLM's update_from_output) up to the row itself."""
        used = self.engine_spec.kv_blocks - self.kv_cache_manager.block_pool.get_num_free_blocks()
        ended = time.perf_counter()
        self.log.append((record.start, t, record.prefill, record.pairs, record.decodes, record.ctx, record.seqs,
                         record.prefill + record.decodes, used, record.policy_seconds + ended - resumed,
                         record.decide_seconds, ended - record.began),
                        record.planned)  # request indices in plan (priority) order


@kernel
def _progress(rows, n_resident, prompt_len, book_computed, book_delivered, book_preemptions, in_flight, block_size):
    """The view's progress columns of the live requests at book `rows`, the first `n_resident`
    of them resident: computed and generated tokens, prefill tokens left, residence, KV blocks
    held, preemptions so far. A request decodes once it has an output token (under async, one on
    its way counts: its next step feeds it) and all but its last token are computed; otherwise it
    prefills its num_tokens (no speculative tokens) minus computed ones. Compiled: as numpy
    expressions this cost a dozen interpreter round trips per step, each 5-15 us after a model
    step (cold caches)."""
    n = len(rows)
    computed = np.empty(n, dtype=np.int64)
    generated = np.empty(n, dtype=np.int64)
    prefill_left = np.empty(n, dtype=np.int64)
    resident = np.arange(n) < n_resident
    kv_blocks = np.empty(n, dtype=np.int64)
    preemptions = book_preemptions[rows]
    for k in range(n):
        done, out = book_computed[rows[k]], book_delivered[rows[k]]
        total = prompt_len[k] + out + in_flight[k]
        decoding = total > prompt_len[k] and done >= total - 1
        computed[k], generated[k] = done, out
        prefill_left[k] = 0 if decoding else total - done
        kv_blocks[k] = blocks_for_at(done, block_size) if resident[k] else 0
    return computed, generated, prefill_left, resident, kv_blocks, preemptions


_EMPTY = np.empty(0, dtype=np.int64)
_computed_tokens = attrgetter("num_computed_tokens")
_request_id = attrgetter("request_id")
_new_token_ids = attrgetter("new_token_ids")
_finish_reason = attrgetter("finish_reason")
_pairs = kernel(prefill_pairs)
_prefill_event = kernel(prefill_event)


@kernel
def _prefill_ended(rows, candidates, got, prefill_left, computed, generated, book_computed):
    """Whether a prefill ended among the view's `candidates` (columns of the book `rows`) that
    vLLM scheduled (`got` >= 0), by events.prefill_event, from the tokens each had left to
    prefill and the computed tokens vLLM left (`book_computed`). One compiled call: as numpy
    expressions a dozen calls, each 5-15 us after a model step."""
    ks = candidates[got >= 0]
    left = prefill_left[ks] + computed[ks] - book_computed[rows[ks]]
    return _prefill_event(prefill_left[ks] > 0, left, generated[ks])[0]


@kernel
def _step_columns(srows, tokens, read_rows, read_computed, computed, prompt_len, rows, candidates, cand_tokens,
                  n_resident, exact):
    """After vLLM scheduled `tokens` for the requests at book `srows`: advance their `computed`
    (`read_rows` take `read_computed` instead: vLLM's own count), count the step's prefill tokens,
    attention pairs, decodes and decode context, and match the scheduled requests against the
    candidates (view columns `candidates` of the book `rows`, the first `n_resident` columns
    resident, wanting `cand_tokens`; -1: any). Deviates when a request outside the candidates ran
    or, for resident candidates (every candidate when `exact`), when one did not get its tokens."""
    m = len(srows)
    for j in range(m):
        computed[srows[j]] += tokens[j]
    for j in range(len(read_rows)):
        computed[read_rows[j]] = read_computed[j]
    prefill = pairs = decodes = ctx = 0
    for j in range(m):
        n = tokens[j]
        start = computed[srows[j]] - n
        if n == 1 and start >= prompt_len[srows[j]]:  # the input is an output token: a decode
            decodes += 1
            ctx += start + 1
        else:
            prefill += n
            pairs += _pairs(start, n)
    cand_rows = rows[candidates]
    got = np.full(len(cand_rows), -1, dtype=np.int64)
    order = np.argsort(cand_rows)
    keys = cand_rows[order]
    deviates = False
    for j in range(m):
        i = np.searchsorted(keys, srows[j])
        if i < len(keys) and keys[i] == srows[j]:
            got[order[i]] = tokens[j]
        else:
            deviates = True
    for i in range(len(cand_rows)):
        if got[i] != cand_tokens[i] and (exact or candidates[i] < n_resident):
            deviates = True
    return prefill, pairs, decodes, ctx, got, deviates


_STATIC = frozenset(("idx", "cls", "arrival", "release", "prompt_len", "ttft_target", "read_rate", "deadline", "group"))
_VIEW_FIELDS = tuple(f.name for f in fields(EngineView))
# the bridge's column types (RequestBook's columns and _progress's), where not int64
_DTYPES = {"cls": np.int8, "arrival": np.float64, "release": np.float64, "ttft_target": np.float64,
           "read_rate": np.float64, "deadline": np.float64, "resident": np.bool_}


class _AsBridgeViews(Policy):
    """A policy fed, in the simulator, views typed as the bridge's: its static columns read-only
    (request_book.static_columns), every other column a writable contiguous array, the free
    blocks an int and the `cached` column as the bridge has it (numba compiles one version per
    argument type, and the simulator's views are read-only throughout). Each decision's plan also
    goes through the bridge's batch rules and step kernel on that view."""

    name = "warm-up"

    def __init__(self, inner: Policy, prefix_caching: bool) -> None:
        self.inner, self.prefix_caching = inner, prefix_caching

    def reset(self, engine: EngineSpec) -> None:
        self.inner.reset(engine)

    def decide(self, view: EngineView) -> Plan:
        n = len(view.idx)
        copy = LazyView.__new__(LazyView)
        cols = copy.__dict__
        for name in _VIEW_FIELDS:
            if name in ("pred_quantiles", "lag", "delay_area"):
                continue
            value = getattr(view, name)
            if isinstance(value, np.ndarray):
                value = np.array(value, dtype=_DTYPES.get(name, np.int64))
                value.flags.writeable = name not in _STATIC
            cols[name] = value
        cols["free_blocks"] = int(view.free_blocks)
        cols["cached"] = np.zeros(n, dtype=np.int64) if self.prefix_caching else None
        object.__setattr__(copy, "_builder", _Columns(view))
        plan = self.inner.decide(copy)
        decision = decide_batch(copy, replace(plan, reject=_EMPTY), np.zeros(n))
        _after_schedule_kernels(copy, decision, np.arange(n, dtype=np.int64), np.array(view.computed, dtype=np.int64),
                                np.array(view.prompt_len, dtype=np.int64))
        return plan


def _after_schedule_kernels(view, decision: BatchDecision, rows: np.ndarray, computed: np.ndarray,
                            prompt_len: np.ndarray) -> None:
    """The bridge's compiled calls after vLLM's schedule() (the step's columns, the prefill
    ends) on the batch of `decision` as if vLLM scheduled it, for the warm-up (only the argument
    types matter; the results are dropped): `rows` are the view's book rows, `computed` and
    `prompt_len` the book's columns (`computed` is changed)."""
    cand = decision.run
    got = _step_columns(rows[cand], decision.tokens, _EMPTY, _EMPTY, computed, prompt_len, rows, cand,
                        decision.tokens, int(np.count_nonzero(view.resident)), True)[4]
    _prefill_ended(rows, cand, got, view.prefill_left, view.computed, view.generated, computed)


class _Columns:
    """The late columns of an `_AsBridgeViews` view: writable copies of the simulator's."""

    def __init__(self, view: EngineView) -> None:
        self.view = view

    def refined(self) -> np.ndarray:
        return np.array(self.view.pred_quantiles, dtype=np.float64)

    def qoe_columns(self) -> dict[str, np.ndarray]:
        return {"lag": np.array(self.view.lag, dtype=np.float64),
                "delay_area": np.array(self.view.delay_area, dtype=np.float64)}


def _warm_up_instance(engine: EngineSpec) -> Instance:
    """A short overload on `engine` with its KV cut to a few requests' worth and slow steps:
    latency and throughput requests and bulk DAGs (a parent, then two children) arriving
    together, with deadlines some cannot meet."""
    bs = engine.block_size
    # a request holds at most 4 blocks; steps slow enough that the work offered at once exceeds
    # what the engine serves over a policy's load window (seconds)
    spec = engine.with_(kv_blocks=12, slot_time=None, latency=replace(engine.latency, c0=0.25, c_prefill=1e-3,
                                                                       c_decode=1e-2, c_ctx=1e-5, c_prefill_ctx=0.0))
    rng = np.random.default_rng(0)
    requests, groups = [], []
    for i in range(72):
        prompt, out, at = int(rng.integers(bs // 2, 2 * bs)), int(rng.integers(2, bs)), 0.0005 * i
        kind = i % 3
        if kind == 0:
            requests.append(SloRequest(id=f"w{i}", cls=RequestClass.LATENCY, arrival=at, prompt_len=prompt,
                                       output_len=out, ttft_target=0.005, read_rate=400.0))
        elif kind == 1:
            requests.append(SloRequest(id=f"w{i}", cls=RequestClass.THROUGHPUT, arrival=at, prompt_len=prompt,
                                       output_len=out, slack_ratio=1.05))
        else:
            members = [f"w{i}-{k}" for k in range(3)]
            for rid in members:
                requests.append(SloRequest(id=rid, cls=RequestClass.BULK, arrival=at, prompt_len=prompt, output_len=out,
                                           group=f"g{i}"))
            groups.append(Group(id=f"g{i}", members=tuple(members), arrival=at, slack_ratio=1.1,
                                edges=((members[0], members[1]), (members[0], members[2]))))
    return Instance(spec, tuple(requests), tuple(groups))
