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

Only this module and the runner import vLLM; nothing else in slosched imports them.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from vllm.v1.core.sched.output import SchedulerOutput
from vllm.v1.core.sched.request_queue import SchedulingPolicy
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.engine import EngineCoreOutput, EngineCoreOutputs, FinishReason
from vllm.v1.request import Request, RequestStatus

from engine_adapter.bridge_config import BridgeConfig
from engine_adapter.events import HeldPlan, is_steady_batch, prefill_event
from engine_adapter.plan_batch import BatchDecision, PrefixHits, decide_batch
from engine_adapter.request_book import RequestBook
from engine_adapter.slo_args import GroupSpec, SloArgs, parse_slo_args
from engine_adapter.vllm_checks import kv_cache_problems, unsupported_settings
from engine_adapter.vllm_kernel_scan import skip_llvmlite_in_kernel_scan
from formulations.engine_spec import EngineSpec
from formulations.latency_model import prefill_pairs
from formulations.online import Plan, Policy
from formulations.requests import CLASS_BY_CODE
from formulations.requests import Request as SloRequest
from formulations.requests import ValidationError
from solvers.compiled import kernel

skip_llvmlite_in_kernel_scan()  # an engine core process may load the policies before its workers start

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
        self.log = StepLog()
        self.newly_finished: list[tuple[int, float]] = []  # (request index, finish) since last taken
        self._rejected: list[Request] = []  # aborted by Plan.reject, not yet reported to their clients
        self.plan_deviations = 0  # steps where vLLM ran a different batch than the plan's
        self.engine_preemptions = 0  # preemptions vLLM made on its own (should stay 0)
        self.vllm_preemptions: dict[int, int] = {}  # request index -> vLLM's own counter, at finish
        self.slo_policy.reset(self.engine_spec)
        self.held = HeldPlan()
        self._pending: dict[int, _StepRecord] = {}  # id(SchedulerOutput) -> its step, until its output
        self._live: list[Request] = []  # the last step's live requests, their book rows and columns
        self._live_running = 0
        self._live_rows = np.empty(0, dtype=np.int64)
        self._live_static: dict[str, np.ndarray] = {}
        self._live_resident = np.empty(0, dtype=bool)

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
        self.row_of[request.request_id] = self.book.row(index)
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
        view, rows, hit_blocks = self._view(now, live, n_running)
        decide_seconds = 0.0
        plan = None
        if not self.held.due(now):  # between events: the held plan's run set, by the same rules
            plan = self.held.run_set(view.idx)
            decision = self._decide_batch(view, plan, live, n_running, rows, hit_blocks)
            if decision.preempt and self.held.steady:  # KV exhausted after a steady run: an event
                plan = None
        if plan is None:
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
                view, rows, hit_blocks = self._view(now, live, n_running)
            decision = self._decide_batch(view, plan, live, n_running, rows, hit_blocks)
        any_prefill = self._note_batch(view, decision, len(plan.preempt), n_running)

        for k in decision.preempt:
            request = live[k]
            self.running.remove(request)
            self._preempt_request(request, time.monotonic())
            self.book.preempted(int(rows[k]), now)
        # live[:n_running] were running; a request the batch rules preempted is not in decision.run
        run = decision.run.tolist()
        run_resident = [live[k] for k in run if k < n_running]
        if hit_blocks is None:
            admit = [live[k] for k in run if k >= n_running]
        else:  # vLLM admits as the simulator's PrefixCache.allocate does, from the plan's waiting ones
            admit = [live[k] for k in decision.admit_from]
        planned = {live[k].request_id: tokens for k, tokens in zip(run, decision.tokens.tolist(), strict=True)}
        keep = set(run_resident)
        paused = [r for r in self.running if r not in keep]
        if admit:
            admit_set = set(admit)
            held = [r for r in self.waiting if r not in admit_set]
        else:  # (no set test per waiting request: most steps admit nothing)
            held = list(self.waiting)
        self.running[:] = run_resident
        self.waiting.clear()
        self.waiting.extend(admit)
        planned_indices = self.book.index[rows[decision.run]]
        policy_seconds = time.perf_counter() - started

        output = super().schedule(throttle_prefills)

        resumed = time.perf_counter()
        self.running.extend(paused)
        left = list(self.waiting)
        self.waiting.clear()
        self.waiting.extend(left + held)
        for request in run_resident:
            if request.status == RequestStatus.PREEMPTED:  # vLLM preempted on its own
                self.engine_preemptions += 1
                self.held.event = True
                self.book.preempted(self.row_of[request.request_id], now)
        for request in admit:
            if request.status == RequestStatus.RUNNING:
                self.book.admitted(self.row_of[request.request_id], now)
        if self._deviates(output.num_scheduled_tokens, planned, run_resident, admit):
            self.plan_deviations += 1
        if any_prefill:  # only decodes: no prefill can end
            self._note_prefill_ends(output.num_scheduled_tokens, view, live, decision)
        elif not output.num_scheduled_tokens:
            self.held.event = True  # idle
        self._record(output, started, now, planned_indices, policy_seconds + time.perf_counter() - resumed, decide_seconds)
        return output

    def _decide_batch(self, view, plan: Plan, live: list[Request], n_running: int, rows: np.ndarray, hit_blocks):
        hits = None if hit_blocks is None else self._hits_after(live, n_running, hit_blocks, int(view.free_blocks))
        return decide_batch(view, plan, self.book.admitted_at[rows], hits)

    def _note_batch(self, view, decision: BatchDecision, plan_preempts: int, n_running: int) -> bool:
        """Events this step's batch makes (engine_adapter/events.py): an eviction by the KV rule,
        an empty batch; and whether it is steady. Returns whether it prefills."""
        victims = len(decision.preempt) > plan_preempts
        ran = decision.run
        if victims or not len(ran):
            self.held.event = True
        any_prefill = bool(decision.admit_from) or bool((view.prefill_left[ran] > 0).any())
        self.held.steady = is_steady_batch(victims, any_prefill, bool((ran < n_running).all()))
        return any_prefill

    def _note_prefill_ends(self, scheduled: dict[str, int], view, live: list[Request],
                           decision: BatchDecision) -> None:
        """A prefill that ended in this step (or a recompute left with its last output token) is
        an event; read from vLLM's computed tokens after scheduling, which count prefix hits."""
        if not scheduled:
            self.held.event = True  # idle
            return
        ks = [k for k in dict.fromkeys([*decision.run.tolist(), *decision.admit_from])
              if live[k].request_id in scheduled]
        if not ks:
            return
        ks_arr = np.array(ks, dtype=np.int64)
        was_prefill = view.prefill_left[ks_arr] > 0
        after = np.fromiter((live[k].num_computed_tokens for k in ks), dtype=np.int64, count=len(ks))
        left = view.prefill_left[ks_arr] + view.computed[ks_arr] - after
        if prefill_event(was_prefill, left, view.generated[ks_arr])[0]:
            self.held.event = True

    def _deviates(self, scheduled: dict[str, int], planned: dict[str, int], run_resident: list[Request],
                  admit: list[Request]) -> bool:
        """Whether vLLM ran another batch than the plan's. With prefix caching the admissions are
        vLLM's own (hits found at each request's turn): the running requests must get exactly
        their planned tokens and nothing outside the plan may run."""
        if not self.cache_config.enable_prefix_caching:
            return scheduled != planned
        allowed = {r.request_id for r in admit}
        return (any(scheduled.get(r.request_id) != planned[r.request_id] for r in run_resident)
                or any(rid not in allowed and rid not in planned for rid in scheduled))

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
            self._request_of.pop(request.request_id, None)
        self._rejected.clear()

    def _record(self, output: SchedulerOutput, began: float, now: float, planned: np.ndarray, policy_seconds: float,
                decide_seconds: float) -> None:
        """Open the log row of the step just scheduled (num_computed_tokens already counts it)."""
        if not output.num_scheduled_tokens:
            return
        entered = time.perf_counter()
        prefill = pairs = decodes = ctx = 0
        requests, row_of, computed = self.requests, self.row_of, self.book.computed
        for rid, n in output.num_scheduled_tokens.items():
            request = requests[rid]
            computed[row_of[rid]] = request.num_computed_tokens  # the book's copy, for the next view
            start = request.num_computed_tokens - n
            if n == 1 and start >= request.num_prompt_tokens:  # the input is an output token: a decode
                decodes += 1
                ctx += start + 1
            else:
                prefill += n
                pairs += prefill_pairs(start, n)
        policy_seconds += time.perf_counter() - entered
        self._pending[id(output)] = _StepRecord(now, began, prefill, pairs, decodes, ctx,
                                                len(output.num_scheduled_tokens), planned, policy_seconds, decide_seconds)

    def _view(self, now: float, live: list[Request], n_running: int):
        """live = running requests (resident: they hold KV) followed by waiting ones. Every column
        is the book's, kept up to date by the hooks (computed tokens as vLLM left them after
        each schedule, generated tokens and preemptions as delivered and made), so nothing is
        read back from the requests; the live rows and their static columns are rebuilt only
        when the live set or its order changed."""
        n = len(live)
        if live != self._live or n_running != self._live_running:  # (identity comparisons)
            row_of = self.row_of
            rows = np.array([row_of[r.request_id] for r in live], dtype=np.int64)  # (cheaper than fromiter)
            self._live, self._live_running, self._live_rows = live, n_running, rows
            self._live_static = self.book.static_columns(rows)
            self._live_resident = np.arange(n) < n_running
        rows = self._live_rows
        hit_blocks = cached = None
        if self.cache_config.enable_prefix_caching:
            hit_blocks = self._hit_blocks(live, n_running)
            cached = np.fromiter(map(len, hit_blocks), dtype=np.int64, count=n) * self.block_size
        view = self._book_view(self.book, now, rows, self._live_static, self._live_resident, self._in_flight(live),
                               self.kv_cache_manager.block_pool.get_num_free_blocks(), cached)
        return view, rows, hit_blocks

    def _book_view(self, book: RequestBook, now: float, rows: np.ndarray, static: dict[str, np.ndarray],
                   resident: np.ndarray, in_flight: np.ndarray, free_blocks: int, cached: np.ndarray | None):
        """The view of `book`'s `rows` (their static columns kept), progress from the book's counts."""
        computed, generated, prefill_left, kv_blocks = _progress(
            rows, resident, static["prompt_len"], book.computed, book.delivered, in_flight, self.block_size)
        return book.view(
            now=now, rows=rows, generated=generated, computed=computed, prefill_left=prefill_left, resident=resident,
            kv_blocks=kv_blocks, preemptions=book.preemption_count[rows], refine=self.predictor.refine,
            free_blocks=free_blocks, engine=self.engine_spec, static=static, cached=cached,
        )

    def _warm_up(self) -> None:
        """Ask the policy once and apply the batch rules to synthetic views (latency and
        throughput requests, with and without a bulk group; running and waiting ones; a KV
        shortage), so that numba's compiled rules are loaded from its disk cache (or compiled)
        here rather than in a run's first steps, which it stalled by 15-39 ms. The policy's state
        is reset by begin_run afterwards."""
        group = GroupSpec(id="warm-up", members=(2, 3), parents=((), ()), prompt_len=(64, 64), deadline=60.0)
        plain = ((0, None), (1, None))
        for kinds in (plain * 3, plain + ((2, group), (2, group)) + plain):
            view, admitted_at = self._synthetic_view(kinds)
            for plan in (self.slo_policy.decide(view), Plan(run=view.idx)):
                decide_batch(view, plan, admitted_at)

    def _synthetic_view(self, kinds: tuple) -> tuple:
        """A view of requests of `kinds` ((class code, group or None) each) with a 64-token
        prompt: the first half decoding at a block boundary (each needs a block, none is free),
        the rest waiting; and their admission times."""
        book = RequestBook(self.predictor.quantile_levels)
        for i, (cls, group) in enumerate(kinds):
            args = SloArgs(i, f"warm-up-{i}", cls, 0.0, 0.0, 1.0, 30.0, 60.0, group, (), None, None)
            book.register(args, 64, np.full(len(book.levels), 32.0))
        n = len(kinds)
        rows = np.arange(n, dtype=np.int64)
        resident = rows < n // 2
        book.one_token_each(rows[resident], 0.5)
        book.computed[rows[resident]] = 64
        cached = np.zeros(n, dtype=np.int64) if self.cache_config.enable_prefix_caching else None
        view = self._book_view(book, 1.0, rows, book.static_columns(rows), resident, np.zeros(n, dtype=np.int64), 0,
                               cached)
        return view, book.admitted_at[rows]

    def _hit_blocks(self, live: list[Request], n_running: int) -> list[list]:
        """Each waiting request's prefix-cache hit now, by vLLM's own lookup (get_computed_blocks
        only reads the cache); none for the running ones."""
        lookup = self.kv_cache_manager.get_computed_blocks
        return [[] for _ in range(n_running)] + [list(lookup(r)[0].blocks[0]) for r in live[n_running:]]

    def _hits_after(self, live: list[Request], n_running: int, hit_blocks: list[list], free: int):
        """The plan rules' prefix-cache input once the plan's preemptions free their blocks
        (plan_batch.PrefixHits), read from vLLM's block reference counts without changing them."""
        blocks_of = self.kv_cache_manager.get_blocks

        def held(request: Request) -> list:
            return list(blocks_of(request.request_id).blocks[0])

        def after(preempt: np.ndarray) -> PrefixHits:
            released = Counter(b.block_id for k in preempt.tolist() for b in held(live[k]))
            ref = {b.block_id: b.ref_cnt - released[b.block_id] for k in preempt.tolist() for b in held(live[k])}

            def refs(block) -> int:
                return ref.get(block.block_id, block.ref_cnt)

            hit_held = np.array([sum(refs(b) > 0 for b in hit) for hit in hit_blocks], dtype=np.int64)
            def freed() -> np.ndarray:  # the running ones' (the waiting ones hold none)
                out = np.zeros(len(live), dtype=np.int64)
                for k in range(n_running):
                    out[k] = sum(refs(b) == 1 for b in held(live[k]))
                return out

            return PrefixHits(
                cached=np.array([len(hit) for hit in hit_blocks], dtype=np.int64) * self.block_size,
                hit_held=hit_held, free_blocks=free + sum(r == 0 for r in ref.values()), freed=freed)

        return after

    def update_from_output(self, scheduler_output: SchedulerOutput, model_runner_output):
        """Stamp the tokens vLLM delivered (its EngineCoreOutputs: new tokens and finish per request)."""
        if self.bridge.slot_time is not None:
            t = (self.slot + 1) * self.bridge.slot_time
        else:
            t = self.now()
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        resumed = time.perf_counter()
        single = []
        row_of = self.row_of
        for engine_outputs in outputs.values():
            for out in engine_outputs.outputs:
                row = row_of.get(out.request_id)
                if row is None:  # not added through add_request: nothing of the bridge's to update
                    continue
                delivered = len(out.new_token_ids)
                if delivered == 1:
                    single.append(row)
                elif delivered > 1:
                    self.book.tokens(row, delivered, t)
                if out.finish_reason is not None:
                    self._finished(row, out.request_id, t)
        if single:
            self.book.one_token_each(np.array(single, dtype=np.int64), t)
        if self._rejected:  # after the loop: a rejection is not a finish
            self._report_rejected(outputs)
        record = self._pending.pop(id(scheduler_output), None)
        if record is not None:  # the step ran tokens (their requests may have finished since)
            record.policy_seconds += time.perf_counter() - resumed
            self._log_step(record, t)
        if self.bridge.slot_time is not None:
            self.slot += 1
        return outputs

    def _finished(self, row: int, request_id: str, t: float) -> None:
        self.held.event = True  # a completion
        self.book.finished(row, t)
        index = int(self.book.index[row])
        self.newly_finished.append((index, t))
        self.vllm_preemptions[index] = self._request_of.pop(request_id).num_preemptions

    def _log_step(self, record: _StepRecord, t: float) -> None:
        log = self.log.rows
        log["start"].append(record.start)
        log["end"].append(t)
        log["prefill_tokens"].append(record.prefill)
        log["prefill_pairs"].append(record.pairs)
        log["decode_seqs"].append(record.decodes)
        log["decode_ctx_tokens"].append(record.ctx)
        log["seqs"].append(record.seqs)
        log["tokens"].append(record.prefill + record.decodes)
        log["kv_used_blocks"].append(self.engine_spec.kv_blocks - self.kv_cache_manager.block_pool.get_num_free_blocks())
        log["policy_seconds"].append(record.policy_seconds)
        log["decide_seconds"].append(record.decide_seconds)
        log["step_seconds"].append(time.perf_counter() - record.began)
        self.log.scheduled.append(record.planned)  # request indices in plan (priority) order


@kernel
def _progress(rows, resident, prompt_len, book_computed, book_delivered, in_flight, block_size):
    """The view's progress columns of the live requests at book `rows`: computed and generated
    tokens, prefill tokens left, KV blocks held. A request decodes once it has an output token
    (under async, one on its way counts: its next step feeds it) and all but its last token are
    computed; otherwise it prefills its num_tokens (no speculative tokens) minus computed ones.
    Compiled: as numpy expressions this cost a dozen interpreter round trips per step."""
    n = len(rows)
    computed = np.empty(n, dtype=np.int64)
    generated = np.empty(n, dtype=np.int64)
    prefill_left = np.empty(n, dtype=np.int64)
    kv_blocks = np.empty(n, dtype=np.int64)
    for k in range(n):
        done, out = book_computed[rows[k]], book_delivered[rows[k]]
        total = prompt_len[k] + out + in_flight[k]
        decoding = total > prompt_len[k] and done >= total - 1
        computed[k], generated[k] = done, out
        prefill_left[k] = 0 if decoding else total - done
        kv_blocks[k] = -(-done // block_size) if resident[k] else 0
    return computed, generated, prefill_left, kv_blocks
