"""The simulated engine: an event loop over iterations that asks the policy only at events.

Events (engine_adapter/events.py, shared with the vLLM bridge): an arrival or DAG release, a
completion, a prefill that ends, a preemption by the engine's KV rule, the plan's `recheck_at`,
an idle iteration, or the next iteration running out of KV blocks. Between events the plan is re-applied each iteration; a batch of only decode steps
repeats unchanged, so the whole run up to the next event is computed in closed form
(decode_run.py) instead of iteration by iteration. The engine never loops over idle time: an
idle engine jumps to the next arrival.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

import numpy as np

from engine_adapter.events import prefill_event
from engine_adapter.plan_rules import Batch
from engine_adapter.simulator.batch import form_batch, is_steady
from engine_adapter.simulator.clock import Clock
from engine_adapter.simulator.decode_run import plan_decode_run
from engine_adapter.simulator.iteration_log import IterationLog
from engine_adapter.simulator.kv_cache import KVCache, blocks_after_steps
from engine_adapter.simulator.prefix_cache import PrefixCache, uses_prefix_cache
from engine_adapter.simulator.request_state import LiveState
from engine_adapter.simulator.view import ViewBuilder
from formulations.instance import Instance
from formulations.latency_model import prefill_pairs
from formulations.online import GroupState, Plan, PlanError, Policy
from formulations.schedule import RequestTimeline, Schedule
from formulations.turns import turn_release
from solvers.prediction.base import LengthPredictor
from solvers.prediction.oracle import OraclePredictor

# Consecutive decisions that run nothing while no arrival is pending: a policy that only keeps
# postponing (recheck_at in the future, forever) is reported as stalled instead of looping.
MAX_IDLE_DECISIONS = 100_000
PROGRESS_EVERY = 4096  # loop turns between progress callbacks
SMALL_BATCH = 32  # batches up to this size take plain-Python paths where numpy's per-call cost dominates
OnDone = Callable[[int, RequestTimeline], None]


class SimulationStalled(RuntimeError):
    """No request can ever progress: the plan runs nothing and nothing is pending."""


def simulate(
    instance: Instance,
    policy: Policy,
    predictor: LengthPredictor | None = None,
    *,
    record_iterations: bool = False,
    progress: Callable[[float], None] | None = None,
    fast_forward: bool = True,
    on_done: OnDone | None = None,
) -> Schedule:
    """Run `policy` on the simulated engine over `instance`; returns the Schedule.

    fast_forward=False asks the policy before every iteration and never skips ahead (slow; used
    to cross-check that fast-forwarding changes nothing for policies whose plan only changes at
    events). With `on_done`, each request's timeline is handed to `on_done(index, timeline)` once
    it is final (completed, rejected, or at the end of the run), its token times a view valid
    during the call only, and the returned Schedule holds no timelines: the engine then keeps no
    finished request's tokens, so a long run's memory follows its live requests.
    """
    sim = _Simulator(instance, policy, predictor or OraclePredictor(), record_iterations, progress, fast_forward)
    if on_done is not None:
        return sim.run(on_done)
    timelines: list[RequestTimeline | None] = [None] * len(instance.requests)

    def keep(index: int, timeline: RequestTimeline) -> None:
        timeline.token_times = timeline.token_times.copy()
        timelines[index] = timeline

    schedule = sim.run(keep)
    schedule.timelines = timelines
    return schedule


class _Simulator:
    def __init__(self, instance: Instance, policy: Policy, predictor: LengthPredictor, record: bool,
                 progress: Callable[[float], None] | None, fast_forward: bool) -> None:
        self.instance = instance
        self.spec = spec = instance.engine
        self.policy = policy
        self.predictor = predictor
        self.progress = progress
        self.fast_forward = fast_forward
        self.log = IterationLog() if record else None
        table = instance.table
        n = len(table)
        self.n = n
        predictions = np.asarray(predictor.predict(instance.requests), dtype=np.float64)
        if predictions.shape != (n, len(predictor.quantile_levels)):
            raise ValueError(f"predictor {predictor.name!r} returned shape {predictions.shape}, "
                             f"expected ({n}, {len(predictor.quantile_levels)})")
        self.state = LiveState(instance, predictions)
        self.kv = KVCache(spec.kv_blocks, spec.block_size)
        self.prefix = PrefixCache(instance, self.state) if uses_prefix_cache(instance) else None
        self.swap = spec.preemption == "swap"
        self.swap_cost = spec.swap_time_per_block if self.swap and spec.slot_time is None else 0.0

        # DAG: children are released when their last parent finishes; a conversation's later turn
        # think_time after its previous turn finishes (formulations/turns.py; pending in
        # `timed_releases` until then); roots arrive by the clock.
        self.is_turn = table.after >= 0
        self.parents_left = np.array([len(p) for p in table.parents], dtype=np.int64) + self.is_turn
        self.children: dict[int, list[int]] = {}  # only requests that have children
        for child in np.flatnonzero(self.parents_left).tolist():
            for p in table.parents[child].tolist():
                self.children.setdefault(p, []).append(child)
            if self.is_turn[child]:
                self.children.setdefault(int(table.after[child]), []).append(child)
        self.think_time = table.think_time
        self.timed_releases: list[tuple[float, int]] = []  # (release time, request index), a heap
        roots = np.flatnonzero(self.parents_left == 0)
        order = np.argsort(table.arrival[roots], kind="stable")
        self.arrival_order = roots[order]
        self.arrival_sorted = table.arrival[self.arrival_order]
        self.next_arrival_pos = 0

        self.groups: list[GroupState] = []
        self.group_pos = np.full(n, -1, dtype=np.int64)
        for g, members in enumerate(table.group_members):
            self.groups.append(GroupState(
                id=instance.groups[g].id, members=members, parents=[table.parents[m] for m in members.tolist()],
                deadline=float(table.deadline[members[0]]), prompt_len=table.prompt_len[members],
                done=np.zeros(len(members), dtype=bool)))
            self.group_pos[members] = np.arange(len(members))

        start = float(self.arrival_sorted[0]) if n else 0.0
        self.clock = Clock(spec.slot_time, start)
        self.iterations = 0
        self.admit_counter = 0
        self.finished = 0
        self.pending_swap_blocks = 0  # swapped out by the plan, charged to the next iteration
        self.run_slots = np.empty(0, dtype=np.int64)
        self.steps = np.arange(int(table.output_len.max()) if n else 0)  # 0, 1, ...: offsets within a run
        self.recheck: float | None = None
        self.views = ViewBuilder(self.state, spec, predictor, self.groups)

    # ---- main loop ------------------------------------------------------------------------
    def run(self, on_done: OnDone) -> Schedule:
        wall0 = time.perf_counter()
        self.on_done = on_done
        self.done_out = np.zeros(self.n, dtype=bool)  # timeline handed to on_done
        self.policy.reset(self.spec)
        state, clock = self.state, self.clock
        need_decide = True
        idle_decisions = 0
        turns = 0
        self._release_arrivals()
        while True:
            if state.n_live == 0:
                nxt = self._next_arrival_time()
                if nxt == np.inf:
                    break
                clock.jump_to(nxt)
                self._release_arrivals()
                need_decide = True
                continue
            if need_decide or not self.fast_forward:
                self._decide()
                need_decide = False
                if state.n_live == 0:  # the plan rejected every live request
                    continue
            if self.prefix is not None:
                self.prefix.lookup(self.run_slots)
            batch = form_batch(state, self.run_slots, self.kv.free, self.spec, self.swap, self.prefix)
            if len(batch.slots) == 0:
                if batch.victims:
                    self._preempt(batch.victims)
                    need_decide = True
                    continue
                if batch.blocked is not None and state.resident[: state.n_live].any():
                    self._gate_stall(batch.blocked)
                idle_decisions = self._idle(idle_decisions)
                need_decide = True
                continue
            idle_decisions = 0
            if self.fast_forward and is_steady(batch, state):
                need_decide = self._decode_run(batch)
            else:
                need_decide = self._step(batch)
            if self._release_arrivals():
                need_decide = True
            if self.recheck is not None and clock.now >= self.recheck:
                need_decide = True
            turns += 1
            if self.progress is not None and turns % PROGRESS_EVERY == 0:
                self.progress(self.finished / self.n)
        if self.progress is not None:
            self.progress(1.0)
        for i in np.flatnonzero(~self.done_out).tolist():  # rejected with a parent, or never released
            self._hand_over(i, np.empty(0))
        return self._schedule(time.perf_counter() - wall0)

    def _gate_stall(self, slot: int) -> None:
        """The plan runs nothing but a waiting request the admission gate refuses, while resident
        requests sit paused on the blocks it would need: the engine idles on the policy's word,
        which is a policy bug (it must price admission with formulations.online.admission_blocks)."""
        state = self.state
        paused = int(np.count_nonzero(state.resident[: state.n_live]))
        raise SimulationStalled(
            f"at t={self.clock.now:.6f} policy {self.policy.name!r} runs only waiting request "
            f"{self.instance.requests[int(state.idx[slot])].id!r}, which the admission gate holds back "
            f"({int(state.prefill_left[slot])} tokens to prefill, {self.kv.free} blocks free), "
            f"while {paused} resident request(s) are paused: the engine would idle")

    def _idle(self, idle_decisions: int) -> int:
        """The plan runs nothing: wait for the next arrival or recheck time, or report a stall."""
        nxt = self._next_arrival_time()
        if self.recheck is not None and self.recheck > self.clock.now:
            nxt = min(nxt, self.recheck)
        pending_arrival = self.next_arrival_pos < len(self.arrival_order) or bool(self.timed_releases)
        idle_decisions = 0 if pending_arrival else idle_decisions + 1
        if nxt == np.inf or idle_decisions > MAX_IDLE_DECISIONS:
            live = [self.instance.requests[i].id for i in self.state.idx[: self.state.n_live][:5].tolist()]
            raise SimulationStalled(
                f"at t={self.clock.now:.6f} policy {self.policy.name!r} runs none of the {self.state.n_live} live "
                f"requests (e.g. {live}) and no arrival or recheck is pending: no progress is possible")
        self.clock.jump_to(nxt)
        self._release_arrivals()
        return idle_decisions

    # ---- decisions ------------------------------------------------------------------------
    def _decide(self) -> None:
        state = self.state
        if self.prefix is not None:
            self.prefix.lookup(np.arange(state.n_live))
        plan = self.policy.decide(self.views.build(self.clock.now, self.kv.free))
        if not isinstance(plan, Plan):
            raise PlanError(f"policy {self.policy.name!r} returned {type(plan).__name__}, not a Plan")
        if len(plan.reject):
            rejected = self._slots_of(plan.reject, "reject")
            named = np.concatenate([np.asarray(plan.run), np.asarray(plan.preempt)])
            if np.isin(np.asarray(plan.reject), named).any():
                raise PlanError(f"policy {self.policy.name!r}: a request is both in plan.reject and plan.run/preempt")
            self._reject(rejected)
        self.run_slots = self._slots_of(plan.run, "run")
        self.recheck = plan.recheck_at
        if len(plan.preempt):
            victims = self._slots_of(plan.preempt, "preempt")
            if np.isin(victims, self.run_slots).any():
                raise PlanError(f"policy {self.policy.name!r}: a request is both in plan.run and plan.preempt")
            if not state.resident[victims].all():
                bad = int(state.idx[victims[~state.resident[victims]][0]])
                raise PlanError(f"policy {self.policy.name!r}: plan.preempt names request "
                                f"{self.instance.requests[bad].id!r}, which holds no KV blocks")
            self.pending_swap_blocks += self._preempt(victims.tolist())

    def _slots_of(self, requests: np.ndarray, field: str) -> np.ndarray:
        """Live slots of the request indices a plan names; PlanError for anything else."""
        req = np.asarray(requests)
        if len(req) == 0:
            return np.empty(0, dtype=np.int64)
        if req.dtype.kind not in "iu":
            raise PlanError(f"policy {self.policy.name!r}: plan.{field} must hold request indices (integers), "
                            f"got dtype {req.dtype}")
        listed = req.tolist()
        if min(listed) < 0 or max(listed) >= self.n:
            bad = next(i for i in listed if i < 0 or i >= self.n)
            raise PlanError(f"policy {self.policy.name!r}: plan.{field} names request index {bad}, "
                            f"not in 0..{self.n - 1}")
        slots = self.state.slot_of[req]
        if min(slots.tolist()) < 0:
            bad = int(req[slots < 0][0])
            raise PlanError(f"policy {self.policy.name!r}: plan.{field} names request "
                            f"{self.instance.requests[bad].id!r} (index {bad}), which is not live at "
                            f"t={self.clock.now:.6f}")
        if len(set(listed)) != len(listed):
            raise PlanError(f"policy {self.policy.name!r}: plan.{field} names a request twice")
        return slots

    # ---- state changes --------------------------------------------------------------------
    def _preempt(self, slots: list[int]) -> int:
        """Evict requests from the KV cache now; returns the blocks swapped out (swap mode)."""
        state, now = self.state, self.clock.now
        swapped = 0
        for s in slots:
            held = int(state.kv_blocks[s])
            self.kv.free += held
            state.kv_blocks[s] = 0
            state.resident[s] = False
            state.preemptions[s] += 1
            if self.swap:
                swapped += held
            else:
                state.computed[s] = 0
                state.prefill_left[s] = state.prompt_len[s] + state.generated[s]
            if self.prefix is not None:
                self.prefix.release(s)
            self.state.preemption_times.setdefault(int(state.idx[s]), []).append(now)
        if self.prefix is not None:
            self.kv.free = self.prefix.pool.free
        return swapped

    def _reject(self, slots: np.ndarray) -> None:
        """Finish rejected requests now, unserved: their blocks are freed, and a DAG descendant is
        rejected with them (it could only be released by their completion)."""
        state, now = self.state, self.clock.now
        if self.prefix is not None:  # blocks shared with other requests stay held; a waiting one holds none
            for s in slots[state.resident[slots]].tolist():
                self.prefix.release(s)
            self.kv.free = self.prefix.pool.free
        else:
            self.kv.free += sum(state.kv_blocks[slots].tolist())
        stack = state.idx[slots].tolist()
        while stack:
            i = stack.pop()
            if state.reject_time[i] == state.reject_time[i]:  # reached twice through the DAG
                continue
            state.reject_time[i] = now
            stack.extend(self.children.get(i, ()))
        for s, i in zip(slots.tolist(), state.idx[slots].tolist(), strict=True):
            self._hand_over(i, state.delivered(s))
        self.finished += len(slots)
        state.remove(slots.tolist())

    def _admit(self, slots: np.ndarray) -> int:
        """Newly scheduled non-resident requests; returns the blocks swapped in (swap mode)."""
        state, now = self.state, self.clock.now
        state.resident[slots] = True
        k = len(slots)
        state.admit_seq[slots] = self.admit_counter + np.arange(k)
        self.admit_counter += k
        for i in state.idx[slots].tolist():
            state.admissions.setdefault(i, []).append(now)
        if self.swap:
            return int(self.kv.blocks_for(state.computed[slots]).sum())
        return 0

    def _step(self, batch: Batch) -> bool:
        """Run one iteration of `batch`; returns whether an event happened."""
        state, kv, spec = self.state, self.kv, self.spec
        start = self.clock.now
        swap_blocks = self.pending_swap_blocks
        self.pending_swap_blocks = 0
        if batch.victims:
            swap_blocks += self._preempt(batch.victims)
        slots, chunk, prefill, any_prefill = batch.slots, batch.chunk, batch.prefill, batch.any_prefill
        if self.prefix is not None:
            slots, chunk = self.prefix.allocate(batch, self.run_slots)
            prefill = state.prefill_left[slots] > 0
            any_prefill = bool(prefill.any())
        newcomers = slots[~state.resident[slots]]
        if len(newcomers):
            swap_blocks += self._admit(newcomers)
        comp = state.computed[slots]
        new_comp = comp + chunk
        if any_prefill:
            pc = chunk[prefill].tolist()  # a few chunks: Python integers beat numpy calls here
            prefill_tokens = sum(pc)
            pairs = sum(map(prefill_pairs, comp[prefill].tolist(), pc))
            decode_comp = new_comp[~prefill]
        else:
            prefill_tokens = pairs = 0
            decode_comp = new_comp
        decode_seqs = len(decode_comp)
        duration = 0.0
        if spec.slot_time is None:
            duration = spec.latency.iteration_time(prefill_tokens, decode_seqs, sum(decode_comp.tolist()), pairs)
            if swap_blocks and self.swap_cost:
                duration += self.swap_cost * swap_blocks
        state.computed[slots] = new_comp
        left = np.maximum(state.prefill_left[slots] - chunk, 0)
        delivers = left == 0
        prefill_ended = False
        if any_prefill:
            # a recompute that has reached its last output token goes on as a decode (vLLM's next
            # step for it is the same one-token step, and the vLLM bridge shows it decoding)
            prefill_ended, last = prefill_event(prefill, left, state.generated[slots])
            left[last] = 0
        state.prefill_left[slots] = left
        new_kv = (new_comp + (kv.block_size - 1)) // kv.block_size
        kv.free = self.prefix.pool.free if self.prefix is not None else kv.free - sum(
            (new_kv - state.kv_blocks[slots]).tolist())
        state.kv_blocks[slots] = new_kv
        end = self.clock.advance(duration)
        self.iterations += 1
        out = slots[delivers]
        g = state.generated[out]
        state.token_times[state.token_base[out] + g] = end
        g += 1
        state.generated[out] = g
        if self.log is not None:
            self.log.add(np.array([start]), np.array([end]), np.array([prefill_tokens]), np.array([decode_seqs]),
                         np.array([kv.capacity - kv.free]), state.idx[slots].copy())
        done = out[g == state.output_len[out]]
        if len(done):
            self._complete(done)
        return bool(batch.victims) or len(done) > 0 or prefill_ended

    def _decode_run(self, batch: Batch) -> bool:
        """Fast-forward the steady decode batch to the next event; returns whether one happened."""
        state, kv = self.state, self.kv
        slots = batch.slots
        g = state.generated[slots]
        comp = state.computed[slots]
        held = state.kv_blocks[slots]
        remaining = state.output_len[slots] - g
        nxt = self._next_arrival_time()
        if self.recheck is not None and self.recheck < nxt:
            nxt = self.recheck
        run = plan_decode_run(self.spec, self.clock, comp, held, remaining.tolist(), kv.free, nxt)
        k, ends = run.k, run.ends
        start = self.clock.now
        self._write_tokens(state.token_base[slots] + g, ends)
        if self.log is not None:
            used0 = kv.capacity - kv.free - sum(held.tolist())
            starts = np.concatenate(([start], ends[:-1]))
            m = len(slots)
            self.log.add(starts, ends, np.zeros(k, dtype=np.int64), np.full(k, m, dtype=np.int64),
                         used0 + blocks_after_steps(comp + 1, np.arange(k), kv.block_size), state.idx[slots].copy())
        state.generated[slots] = g + k
        new_comp = comp + k
        state.computed[slots] = new_comp
        new_kv = (new_comp + (kv.block_size - 1)) // kv.block_size
        if self.prefix is not None:
            self.prefix.grow(slots, comp, k)
            kv.free = self.prefix.pool.free
        else:
            kv.free -= sum((new_kv - held).tolist())
        state.kv_blocks[slots] = new_kv
        self.clock.finish_run(ends, k)
        self.iterations += k
        if k == run.k_done:
            self._complete(slots[remaining == k])
            return True
        return run.kv_stop

    def _write_tokens(self, first: np.ndarray, ends: np.ndarray) -> None:
        """Member j's next tokens (buffer positions first[j], first[j]+1, ...) delivered at `ends`.

        Up to SMALL_BATCH members, one slice assignment per member is about twice as fast as
        building the (members x iterations) index array; beyond, the index array wins.
        """
        k = len(ends)
        if len(first) <= SMALL_BATCH:
            token_times = self.state.token_times
            for f in first.tolist():
                token_times[f:f + k] = ends
        else:
            self.state.token_times[np.add.outer(first, self.steps[:k])] = ends

    def _complete(self, slots: np.ndarray) -> None:
        """Finished requests free their blocks; DAG children whose parents are all done are released."""
        state, now = self.state, self.clock.now
        if self.prefix is None:
            self.kv.free += sum(state.kv_blocks[slots].tolist())
        else:
            for s in slots.tolist():
                self.prefix.release(s)
            self.kv.free = self.prefix.pool.free
        released: list[int] = []
        for s, i in zip(slots.tolist(), state.idx[slots].tolist(), strict=True):
            state.finish_time[i] = now
            pos = self.group_pos[i]
            if pos >= 0:
                self.groups[state.group[s]].done[pos] = True
            for c in self.children.get(i, ()):
                self.parents_left[c] -= 1
                if self.parents_left[c] == 0:
                    if self.is_turn[c]:
                        at = turn_release(now, float(self.think_time[c]), self.spec.slot_time)
                        state.sent[c] = at
                        if at > now:
                            heapq.heappush(self.timed_releases, (at, c))
                            continue
                    released.append(c)
            self._hand_over(i, state.delivered(s))
        self.finished += len(slots)
        state.remove(slots.tolist())
        if released:
            state.add(np.array(released, dtype=np.int64), now)

    # ---- arrivals -------------------------------------------------------------------------
    def _next_arrival_time(self) -> float:
        """The next arrival or later turn's release (inf: none is pending)."""
        pos = self.next_arrival_pos
        nxt = float(self.arrival_sorted[pos]) if pos < len(self.arrival_sorted) else np.inf
        return min(nxt, self.timed_releases[0][0]) if self.timed_releases else nxt

    def _release_arrivals(self) -> bool:
        """Make every request that has arrived (or turn released) by now live; returns whether
        there was one."""
        now = self.clock.now
        due = []
        while self.timed_releases and self.timed_releases[0][0] <= now:
            due.append(heapq.heappop(self.timed_releases)[1])
        if due:
            self.state.add(np.array(sorted(due), dtype=np.int64), now)
        pos = self.next_arrival_pos
        if pos == len(self.arrival_sorted) or self.arrival_sorted[pos] > now:
            return bool(due)
        hi = int(self.arrival_sorted.searchsorted(now, side="right"))
        self.state.add(self.arrival_order[pos:hi], now)
        self.next_arrival_pos = hi
        return True

    # ---- result ---------------------------------------------------------------------------
    def _hand_over(self, i: int, token_times: np.ndarray) -> None:
        """Request i's final timeline to on_done; the engine forgets its admissions and preemptions."""
        state = self.state
        finish, reject = float(state.finish_time[i]), float(state.reject_time[i])
        self.done_out[i] = True
        self.on_done(i, RequestTimeline(
            request_id=self.instance.table.ids[i], release=float(state.release_time[i]), token_times=token_times,
            admissions=state.admissions.pop(i, []), preemptions=state.preemption_times.pop(i, []),
            finish=None if finish != finish else finish, rejected=None if reject != reject else reject,  # nan: none
            cached_tokens=int(self.prefix.hits_of[i]) if self.prefix is not None else 0,
            queried_tokens=int(self.prefix.queries_of[i]) if self.prefix is not None else 0))

    def _schedule(self, wall: float) -> Schedule:
        meta: dict[str, object] = {"wall_seconds": wall, "policy": self.policy.name, "predictor": self.predictor.name}
        if self.prefix is not None:
            ids = self.instance.table.ids
            meta["prefix_cache"] = {"hit_tokens": self.prefix.hit_tokens, "query_tokens": self.prefix.query_tokens,
                                    "hits_of": dict(zip(ids, self.prefix.hits_of.tolist(), strict=True)),
                                    "queries_of": dict(zip(ids, self.prefix.queries_of.tolist(), strict=True))}
        if self.log is not None:
            meta["iteration_log"] = self.log.as_dict()
        return Schedule(timelines=[], iterations=self.iterations, meta=meta)
