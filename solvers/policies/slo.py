"""`slo`: our mixed-SLO policy for latency, throughput and bulk (DAG) requests.

Every live request gets a *slack* (slo_slack.py): how long it can still wait before it must run
every iteration to meet its SLO, from predicted lengths only. Requests whose SLO is out of reach
even with the optimistic quantile are doomed. Admission control (`admission`, on by default) also
gives up on requests that are still feasible alone but not together: Moore-Hodgson over the
engine's time (in due-time order the cumulative engine seconds of the admitted work,
signals.engine_seconds, must fit the time left until each due time; at the first overflow the
admitted request or bulk group with the most engine seconds per SLO is given up). This is what
keeps least-slack order from EDF's domino effect. With `reject` (on by default) a given-up request
is rejected at once (`Plan.reject`: the client learns now, instead of holding on for a late
answer); without it, given-up and doomed requests are best effort: they rank after every request
that can still make it and a starvation guard promotes those waiting `starvation_iterations`.

Batch selection is a 2-D knapsack over KV blocks and the token budget (at most max_seqs items).
A request's value is the SLO it stands to lose by not running now, about
1 / (1 + slack / urgency_horizon) plus `idle_value` (tiny once doomed), times
(median / own remaining iterations)^short_first capped at `short_first_cap`: per block and step,
short requests complete the most SLOs, but an uncapped factor lets nearly finished requests with
ample slack outrank urgent ones. `selection="auto"` picks the order by the offered load
(offered_load.py): up to `overload_at`, least slack first (a resident's slack reduced by what its
preemption would cost); above it, value per unit of normalized weight, because once the engine
cannot finish everything, packing the most SLO value per block and token meets more SLOs than
spending the engine on long requests that are about to be late. A prefill that does not fit whole
takes a partial chunk of the budget left (the engine chunks prompts), so no budget is idle while
a waiting request could use it. That fill walks the selection's own order and admits waiting
requests head-of-line, as the engine admits its queue: admitting one past a request that does not
fit would let it hold the KV the skipped one waits for. Residents that lose their place are preempted only if the chosen
batch needs their blocks: below `overload_at` only doomed ones; above it also those whose slack
after paying their recompute exceeds `preempt_margin_iterations`, to admit an urgent request
(Andes' move: a stream with a full buffer yields to a starving one).

When every live request fits this iteration (seats, tokens, KV), they all run and none of the
above is computed: with nothing to choose between, order only decides who the engine evicts if
KV runs out later, and it asks again then.

Relation to the papers: the QoE gain view of streams follows Andes (arXiv 2404.16283); "just
enough service to meet each SLO, rest best effort" and quantile upper bounds follow Tempo
(arXiv 2504.20068); early rejection under overload follows SLOs-Serve and QoServe. What is ours:
one slack scale for all classes (least-laxity order), DAG latest-finish deadlines, doom detection
with the optimistic quantile, admission control in engine seconds, the load-driven choice of
order, and the 2-D knapsack.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import EMPTY, EngineView, Plan, Policy
from solvers.compiled import kernel
from solvers.knapsack.greedy import best_of_greedy, densities_of, walk
from solvers.policies import batching, signals
from solvers.policies.dag_deadlines import GroupDeadlines
from solvers.policies.offered_load import OfferedLoad
from solvers.policies.per_request import grown, index_bound
from solvers.policies.slo_params import SloParams
from solvers.policies.slo_slack import (ADMISSION_DUE, HI, ITERATION, SLACK, STEPS_HI, STEPS_MID, PendingMember,
                                        SlackEstimate, as_estimate, estimate, estimate_args, estimate_each)
from solvers.stable_sort import argsort_in_kernel, prefix_in_kernel, stable_argsort


class StepKnapsack(NamedTuple):
    """One step's selection problem: items are live requests (view positions). A tuple: cheap to
    build at every decision."""

    values: np.ndarray
    weights: np.ndarray  # (n, 2): KV blocks after the step, tokens this step
    capacities: np.ndarray  # (kv_blocks, token_budget)
    max_items: int
    runnable: np.ndarray  # positions released by now, in position order
    key: np.ndarray  # sort key (smaller runs first)
    arrival: np.ndarray  # s: the view's arrival times (equal keys: older first)
    estimate: SlackEstimate
    given_up: np.ndarray  # bool: admission control gave up on it (this decision or before)
    doomed: np.ndarray  # bool: doomed or given up (best effort from now on)

    def priority_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """What the runnable positions are ranked by: key, then arrival (then position)."""
        return self.key[self.runnable], self.arrival[self.runnable]

    def finish_args(self) -> tuple:
        """What `_finish` reads of the step, as one tuple."""
        est = self.estimate
        return (self.key, self.values, self.weights, self.capacities, self.runnable, self.arrival, self.doomed,
                self.given_up, est.slack, est.steps_hi, est.iteration)

    @property
    def order(self) -> np.ndarray:
        """Runnable positions, highest priority first. Sorted when asked: a decision that packs
        by density never needs it."""
        return self.runnable[stable_argsort(*self.priority_keys())]


class SloPolicy(Policy):
    name = "slo"
    Params = SloParams

    def __init__(self, **params: object) -> None:
        self.params = SloParams(**params)
        self._load = OfferedLoad()
        self._groups = GroupDeadlines()
        self._clear()

    def reset(self, engine: EngineSpec) -> None:
        self._clear()

    def _clear(self) -> None:
        self._load.clear()
        self._groups.clear()
        self._given_up = np.zeros(0, dtype=bool)  # per request index
        self._given_up_group = np.zeros(0, dtype=bool)  # per group index
        self._group_size = np.zeros(0)  # per group index: its members (fixed when the group appears)
        self._sized = 0  # groups whose size is in _group_size

    def slack(self, view: EngineView) -> SlackEstimate:
        """Slack, doom and due times of every live request (slo_slack.py)."""
        return estimate(view, self.params, self._groups)

    # ---- the arguments of the compiled stages -----------------------------------------------------
    def _admission_args(self, view: EngineView, pending: tuple[PendingMember, ...]) -> tuple:
        """What admission control reads besides the estimate (`_assess`): whether it is on, the
        per-request and per-group state it marks, and the bulk members not released yet (their
        prompt's prefill and one token, at the least)."""
        self._track_groups(view)
        if pending:
            members = np.array([(p.tokens, p.duration, p.due, p.group) for p in pending]).T
        else:
            members = _NO_PENDING
        return (self.params.admission, signals.engine_costs(view.engine), self._given_up, self._given_up_group,
                self._group_size, members, self.params.max_rejections)

    def _track_groups(self, view: EngineView) -> None:
        """Room for every request and group seen, and the size of each group new since the last
        decision (only those: a long run has tens of thousands)."""
        self._given_up = grown(self._given_up, index_bound(view.idx), fill=False)
        if len(view.groups) == self._sized:
            return
        self._given_up_group = grown(self._given_up_group, len(view.groups), fill=False)
        self._group_size = grown(self._group_size, len(view.groups), fill=0)
        for g in range(self._sized, len(view.groups)):
            self._group_size[g] = len(view.groups[g].members)
        self._sized = len(view.groups)

    def _column_args(self, view: EngineView) -> tuple:
        """What the knapsack's columns read besides the estimate (`_assess`)."""
        params, engine = self.params, view.engine
        return (view.idx, view.release, view.prompt_len, view.resident, view.kv_blocks, view.computed,
                engine.preemption == "swap", engine.swap_time_per_block, params.gang_iterations,
                params.starvation_iterations, params.short_first, params.short_first_cap, params.idle_value,
                params.urgency_horizon, signals.kv_weight_args(view))

    # ---- decision --------------------------------------------------------------------------------
    def knapsack_inputs(self, view: EngineView) -> StepKnapsack:
        """This step's batch-selection problem (also what the gap study hands the exact solver)."""
        est_args, pending = estimate_args(view, self.params, self._groups)
        rows, est_doomed, given_up, doomed, key, values, weights, runnable = _assess(
            est_args, self._admission_args(view, pending), self._column_args(view))
        return StepKnapsack(
            values=values, weights=weights, capacities=signals.kv_capacities(view.engine),
            max_items=view.engine.max_seqs, runnable=runnable, key=key, arrival=view.arrival,
            estimate=as_estimate(est_args, rows, est_doomed, pending), given_up=given_up, doomed=doomed,
        )

    def _rank(self, step: StepKnapsack, overloaded: bool) -> np.ndarray:
        """Runnable positions in the order the batch selection walks them (`_rank_at_once`)."""
        return _rank_at_once(step.values, step.weights, step.capacities, step.key, step.arrival, step.runnable,
                             self._by_density(overloaded), 0)

    def _by_density(self, overloaded: bool) -> bool:
        """Whether the selection packs by value density ("auto" above `overload_at`, or "density")
        rather than in least-slack order."""
        selection = self.params.selection
        return selection == "density" or (selection == "auto" and overloaded)

    def _select(self, step: StepKnapsack, rank: np.ndarray) -> np.ndarray:
        """Positions taken by the knapsack under the "density" and "exact" rules ("auto" and
        "priority" walk the rank inside `_walk_decision`)."""
        values, weights, caps = step.values, step.weights, step.capacities
        order = step.order
        if self.params.selection == "density":
            return order[best_of_greedy(values[order], weights[order], caps, max_items=step.max_items)]
        from formulations.exact.knapsack import KnapsackProblem
        from solvers.knapsack.cpsat import solve_cpsat

        problem = KnapsackProblem(values[order], weights[order].astype(np.int64), caps.astype(np.int64),
                                  max_items=step.max_items)
        return order[solve_cpsat(problem).taken]

    def _choice_args(self, view: EngineView, overloaded: bool, t: float) -> tuple:
        """How `_finish` chooses: by density or not, the head of the rank to try first (the walk
        and the fill consume it only up to the last seat), the preemption margin in seconds,
        overloaded or not, and whether given-up requests are rejected."""
        return (self._by_density(overloaded), _HEAD_SEATS * view.engine.max_seqs,
                self.params.preempt_margin_iterations * t, overloaded, self.params.reject)

    def decide(self, view: EngineView) -> Plan:
        n = len(view)
        if n == 0:
            return Plan(run=EMPTY)
        overloaded = self._load.update(view) > self.params.overload_at
        everyone = batching.all_fit(view)
        if everyone is not None and not self._holds_given_up(view):
            return Plan(run=view.idx[everyone])
        fill_columns = batching.fill_columns(view)
        if self.params.selection in ("auto", "priority"):  # the whole decision in one compiled call
            est_args, pending = estimate_args(view, self.params, self._groups)
            choice = self._choice_args(view, overloaded, est_args[ITERATION])
            run_pos, victims, reject, wake = _walk_decision(
                est_args, self._admission_args(view, pending), self._column_args(view),
                signals.kv_capacities(view.engine), choice, fill_columns)
        else:
            step = self.knapsack_inputs(view)
            rank = self._rank(step, overloaded)
            chosen = np.zeros(n, dtype=bool)
            chosen[self._select(step, rank)] = True
            run_pos, victims, reject, wake = _finish(chosen, rank, step.finish_args(),
                                                     self._choice_args(view, overloaded, step.estimate.iteration),
                                                     view.release, view.now, fill_columns)
        return Plan(run=view.idx[run_pos], preempt=view.idx[victims] if len(victims) else EMPTY,
                    reject=view.idx[reject] if len(reject) else EMPTY, recheck_at=wake if wake > view.now else None)

    def _holds_given_up(self, view: EngineView) -> bool:
        """Whether a live request belongs to a group given up on earlier (it must be rejected too;
        requests given up on alone are rejected at the decision that gives up on them)."""
        if not self.params.reject or not self._given_up_group.any():
            return False
        return bool(((view.group >= 0) & self._given_up_group[np.maximum(view.group, 0)]).any())


# ---- the compiled stages ---------------------------------------------------------------------------
@kernel
def _assess(est_args, admission_args, column_args):
    """Estimate (slo_slack.estimate_each), admission control (`_admission_control`, when on) and
    the knapsack's columns, in one compiled call: the estimate's matrix and doomed mask, the
    given-up mask, doomed or given up, then `_knapsack_columns`' key, values, weights and
    runnable positions."""
    (pred, columns, generated, prefill, budget, now, t, cls, due, due_lo, arrival, ttft_target, read_rate, delay_area,
     lag, group, threshold, share) = est_args
    admission, costs, given_up, given_up_group, group_size, pending, max_rejections = admission_args
    (idx, release, prompt_len, resident, kv_blocks, computed, swap, swap_time, gang_iterations, starvation_iterations,
     short_first, short_first_cap, idle_value, urgency_horizon, weight_args) = column_args
    rows, est_doomed = estimate_each(*est_args)
    if admission:
        gave_up = _admission_control(costs, now, t, est_doomed, given_up, given_up_group, group_size, idx, cls, group,
                                     release, rows[HI], generated, prompt_len, prefill, rows[STEPS_HI],
                                     rows[ADMISSION_DUE], pending, max_rejections)
    else:
        gave_up = np.zeros(len(idx), dtype=np.bool_)
    doomed = est_doomed | gave_up
    key, values, weights, runnable = _knapsack_columns(
        rows[SLACK], doomed, cls, group, resident, kv_blocks, computed, release, now, t, swap, swap_time, budget,
        gang_iterations, starvation_iterations, rows[STEPS_MID], short_first, short_first_cap, idle_value,
        urgency_horizon, weight_args)
    return rows, est_doomed, gave_up, doomed, key, values, weights, runnable


@kernel
def _walk_decision(est_args, admission_args, column_args, capacities, choice, fill_columns):
    """A decision under the "auto" and "priority" rules in one compiled call (a handful of calls
    through the interpreter cost more than a small decision's own arithmetic): `_assess`, the
    rank's head, the greedy walk over it (over the whole rank if it runs past the head), and
    `_finish`. Returns `_finish`'s."""
    _, _, _, _, _, now, t, _, _, _, arrival, _, _, _, _, _, _, _ = est_args  # slo_slack.estimate_args'
    _, release, _, _, _, _, _, _, _, _, _, _, _, _, _ = column_args  # SloPolicy._column_args'
    _, _, _, _, _, _, max_items, _, _, _, _ = fill_columns  # batching.fill_columns'
    rows, _, gave_up, doomed, key, values, weights, runnable = _assess(est_args, admission_args, column_args)
    by_density, head = choice[0], choice[1]
    rank = _rank_at_once(values, weights, capacities, key, arrival, runnable, by_density, head)
    taken = walk(values, weights, capacities, max_items, rank)
    if len(taken) < max_items and len(rank) < len(runnable):  # the walk may go past the head
        rank = _rank_at_once(values, weights, capacities, key, arrival, runnable, by_density, 0)
        taken = walk(values, weights, capacities, max_items, rank)
    chosen = np.zeros(len(doomed), dtype=np.bool_)
    chosen[taken] = True
    step = (key, values, weights, capacities, runnable, arrival, doomed, gave_up, rows[SLACK], rows[STEPS_HI], t)
    return _finish(chosen, rank, step, choice, release, now, fill_columns)  # step: StepKnapsack.finish_args' tuple


@kernel
def _finish(chosen, rank, step, choice, release, now, fill_columns):
    """From the knapsack's choice to the plan: evictions (`_evictions`), rejections (a given-up
    request frees its own blocks and does not run), the spare-budget fill over the rank
    (batching.fill_at; the whole rank if a seat is left past its head) and the wake-up time.
    Returns the run order, victims and rejected (view positions) and `_wake_at`'s time.
    `step`: StepKnapsack.finish_args'; `choice`: SloPolicy._choice_args'."""
    key, values, weights, capacities, runnable, arrival, doomed, gave_up, slack, steps_hi, t = step
    by_density, _, margin, overloaded, reject_given_up = choice
    kv_blocks, _, _, _, resident, free_blocks, max_items, _, _, _, _ = fill_columns  # batching.fill_columns'
    blocks, tokens = weights[:, 0].copy(), weights[:, 1].copy()
    chosen, victims = _evictions(chosen, resident, doomed, key, slack, steps_hi, margin, t, overloaded, values,
                                 weights, blocks, capacities, max_items, runnable, arrival, kv_blocks, free_blocks)
    reject = np.flatnonzero(gave_up) if reject_given_up else np.empty(0, dtype=np.int64)
    eligible, leaving = rank, victims
    if len(reject):  # rejected requests free their blocks themselves
        chosen[reject] = False
        victims = victims[~gave_up[victims]]
        leaving = np.concatenate((victims, reject))
    if len(rank) < len(runnable) and np.count_nonzero(chosen[rank]) < max_items:
        rank = _rank_at_once(values, weights, capacities, key, arrival, runnable, by_density, 0)  # a seat is left
        eligible = rank
    if len(reject):
        eligible = rank[~gave_up[rank]]
    run_pos = batching.fill_at(eligible, chosen, leaving, blocks, tokens, fill_columns)
    return run_pos, victims, reject, _wake_at(release, now, doomed, run_pos, slack)


@kernel
def _evictions(chosen, resident, doomed, key, slack, steps_hi, margin, t, overloaded, values, weights, blocks,
               capacities, max_items, runnable, arrival, kv_blocks, free_blocks):
    """Preempt only what pays, and only to admit waiting requests that are urgent (slack below the
    margin): residents that are best effort, or whose slack after paying their recompute still
    covers the longest urgent newcomer's whole run (they can wait it out), or, when the engine is
    overloaded, exceeds the margin. Admissions that cannot be made that way are dropped, lowest
    priority first, and the residents keep running. Returns the batch and the victims (`blocks`:
    weights' first column)."""
    victims, pays = _victims_that_pay(chosen, resident, doomed, key, slack, steps_hi, margin, t, overloaded, blocks,
                                      kv_blocks, free_blocks)
    if pays:
        return chosen, victims
    # too costly: keep the urgent admissions only, as far as the evictable blocks allow
    admitted, urgent, cand, rank = _eviction_candidates(chosen, resident, doomed, key, slack, steps_hi, margin, t,
                                                        overloaded)
    chosen = chosen.copy()
    order = runnable[argsort_in_kernel(key[runnable], (arrival[runnable],))]
    pos_rank = np.empty(len(chosen))
    pos_rank[order] = np.arange(len(order))
    chosen[admitted[~urgent]] = False
    ranked, freed, ranked_yet = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), False
    urgent_admitted = admitted[urgent]
    for req in urgent_admitted[np.argsort(-pos_rank[urgent_admitted])]:
        need = batching.shortfall_at(resident, chosen, blocks, kv_blocks, free_blocks)
        if need <= 0:
            break
        if not ranked_yet:  # dropping admissions leaves the eviction ranking as it is
            ranked, freed = batching.eviction_head(resident, chosen, rank, kv_blocks, need)
            ranked_yet = True
        if cand[ranked[:batching.enough_count(freed, need)]].all():
            break
        chosen[req] = False
    # residents fill the room the dropped admissions leave
    rest = order[resident[order] & ~chosen[order]]
    room = capacities - weights[np.flatnonzero(chosen)].sum(axis=0)
    more = walk(values[rest], weights[rest], room, max(max_items - np.count_nonzero(chosen), 0),
                np.arange(len(rest)))
    chosen[rest[more]] = True
    victims = batching.victims_at(resident, chosen, rank, blocks, kv_blocks, free_blocks)
    return chosen, victims[cand[victims]]


@kernel
def _rank_columns(values, weights, capacities, key, arrival, runnable, by_density):
    """What `_rank_at_once` sorts the runnable positions by, gathered in one pass: rows -density
    (greedy.densities'; only `by_density`), key and arrival."""
    out = np.empty((3, len(runnable)))
    if by_density:
        density = densities_of(values, weights, capacities)
        for j in range(len(runnable)):
            out[0, j] = -density[runnable[j]]
    for j in range(len(runnable)):
        out[1, j], out[2, j] = key[runnable[j]], arrival[runnable[j]]
    return out


@kernel
def _rank_at_once(values, weights, capacities, key, arrival, runnable, by_density, head):
    """Runnable positions in the order the batch selection walks them: by value density when it
    packs by density, else least slack first (ties by priority, then position; np.lexsort's
    order). The spare-budget fill walks the same order, so it continues the selection's own
    greedy. `head`: only the first `head` rows or a few more (an exact prefix; 0: all)."""
    columns = _rank_columns(values, weights, capacities, key, arrival, runnable, by_density)
    if by_density:
        return runnable[prefix_in_kernel(head, columns[0], (columns[1], columns[2]))]
    return runnable[prefix_in_kernel(head, columns[1], (columns[2],))]


@kernel
def _victims_that_pay(chosen, resident, doomed, key, slack, steps_hi, margin, t, overloaded, blocks, kv_blocks,
                      free_blocks):
    """_evictions' usual case in one compiled call: the residents to evict so the chosen batch
    fits (none when it fits as it is), and whether that pays (no victim is needed, or every
    victim is a candidate and every admission urgent; else the caller drops admissions)."""
    if batching.shortfall_at(resident, chosen, blocks, kv_blocks, free_blocks) <= 0:
        return np.empty(0, dtype=np.int64), True
    _, urgent, cand, rank = _eviction_candidates(chosen, resident, doomed, key, slack, steps_hi, margin, t, overloaded)
    victims = batching.victims_at(resident, chosen, rank, blocks, kv_blocks, free_blocks)
    return victims, len(victims) == 0 or (cand[victims].all() and urgent.all())


@kernel
def _eviction_candidates(chosen, resident, doomed, key, slack, steps_hi, margin, t, overloaded):
    """_evictions' candidates: the waiting requests the batch admits, which of them are urgent
    (slack below `margin`, not doomed), the unchosen residents that may be evicted for them (best
    effort, or key above the longest urgent admission's run, `wait_out`; above `margin` when
    overloaded) and the eviction rank (their key; -inf: not a candidate)."""
    admitted = np.flatnonzero(chosen & ~resident)
    urgent = np.empty(len(admitted), dtype=np.bool_)
    wait_out = -np.inf
    for k in range(len(admitted)):
        i = admitted[k]
        urgent[k] = slack[i] < margin and not doomed[i]
        if urgent[k]:
            wait_out = max(wait_out, steps_hi[i])
    wait_out = wait_out * t if urgent.any() else np.inf
    cand = np.empty(len(chosen), dtype=np.bool_)
    rank = np.empty(len(chosen))
    for i in range(len(chosen)):
        cand[i] = resident[i] and not chosen[i] and (doomed[i] or key[i] > (margin if overloaded else wait_out))
        rank[i] = key[i] if cand[i] else -np.inf
    return admitted, urgent, cand, rank


@kernel
def _wake_at(release, now, doomed, run_pos, slack):
    """When to decide again for the runnable requests this plan pauses that can still make it:
    now + the least of their slacks (nan if a slack is nan, as numpy's min; `now`: none)."""
    paused = np.empty(len(release), dtype=np.bool_)
    for i in range(len(release)):
        paused[i] = release[i] <= now + 1e-12 and not doomed[i]
    for pos in run_pos:
        paused[pos] = False
    least, found = np.inf, False
    for i in range(len(release)):
        if paused[i]:
            found = True
            if slack[i] != slack[i]:
                return np.nan
            least = min(least, slack[i])
    return now + least if found else now


_HEAD_SEATS = 2  # the head of the rank tried first: this many times max_seqs positions
_NO_PENDING = np.empty((4, 0))  # (tokens, duration, due, group) of bulk members not released yet
_DEMAND, _DUE, _GROUP, _SCORE, _LIVE = range(5)  # rows of _admission_items' matrix


@kernel
def _admission_items(costs, now, t, doomed, given_up, given_up_group, group_size, idx, cls, view_group, release,
                     hi, generated, prompt_len, prefill, steps_hi, view_due, pending):
    """Admission control's items: the live requests neither doomed nor given up on, then the bulk
    members not released yet of groups not given up on (`pending` rows: tokens, duration, due,
    group; their prompt's prefill and one token, at the least). One row per quantity, one column
    per item: its engine seconds (signals.engine_seconds_at), due time, bulk group (-1: none),
    engine seconds per SLO met (a bulk group's work over its size: it meets one SLO per member
    or none; a lone request's own work) and view position (-1: pending)."""
    n = len(idx)
    out = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        out[i] = doomed[i] or given_up[idx[i]] or (view_group[i] >= 0 and given_up_group[view_group[i]])
        out[i] = out[i] or release[i] > now + 1e-12
    live = np.flatnonzero(~out)
    kept = np.zeros(pending.shape[1], dtype=np.bool_)
    for j in range(pending.shape[1]):
        kept[j] = not given_up_group[int(pending[3, j])]
    kept = np.flatnonzero(kept)
    m = len(live) + len(kept)
    items = np.empty((5, m))
    items[_GROUP], items[_LIVE] = -1.0, -1.0
    for k in range(len(live)):
        i = live[k]
        decode = hi[i] - generated[i]
        context = prompt_len[i] + generated[i] + decode / 2.0
        items[_DEMAND, k] = signals.engine_seconds_at(costs, float(prefill[i]), decode, context, steps_hi[i])
        items[_DUE, k], items[_LIVE, k] = view_due[i], i
        if cls[i] == signals.BULK:
            items[_GROUP, k] = view_group[i]
    for j in range(len(kept)):
        tokens, k = pending[0, kept[j]], len(live) + j
        items[_DEMAND, k] = signals.engine_seconds_at(costs, tokens - 1.0, 1.0, tokens, pending[1, kept[j]] / t)
        items[_DUE, k], items[_GROUP, k] = pending[2, kept[j]], pending[3, kept[j]]
    top = -1
    for k in range(m):
        top = max(top, int(items[_GROUP, k]))
    group_work = np.zeros(top + 1)
    for k in range(m):
        if items[_GROUP, k] >= 0:
            group_work[int(items[_GROUP, k])] += items[_DEMAND, k]
    items[_SCORE] = items[_DEMAND]
    for k in range(m):
        if items[_GROUP, k] >= 0:
            items[_SCORE, k] = group_work[int(items[_GROUP, k])] / group_size[int(items[_GROUP, k])]
    return items


@kernel
def _admission_control(costs, now, t, doomed, given_up, given_up_group, group_size, idx, cls, view_group, release,
                       hi, generated, prompt_len, prefill, steps_hi, view_due, pending, max_rejections):
    """Admission control in one compiled call: _admission_items, their due order and
    _moore_hodgson."""
    items = _admission_items(costs, now, t, doomed, given_up, given_up_group, group_size, idx, cls, view_group,
                             release, hi, generated, prompt_len, prefill, steps_hi, view_due, pending)
    order = argsort_in_kernel(items[_DUE], (items[_DUE],))
    return _moore_hodgson(order, items, now, max_rejections, idx, view_group, given_up, given_up_group)


@kernel
def _moore_hodgson(order, items, now, max_rejections, idx, view_group, given_up, given_up_group):
    """Moore-Hodgson on an aggregate engine over `items` (_admission_items'): in order of due time
    (`order`), the cumulative engine seconds of the admitted work must fit the time until each
    due time; at the first overflow the admitted item with the highest score is given up (with
    every item of its group, if any), at most `max_rejections` times. Marks them in `given_up`
    (per request index) and `given_up_group`, and returns which live requests (view positions)
    are given up on, now or before. The running sums are kept across give-ups and redone only
    from the first position a give-up changed (nothing before it moved)."""
    demand, due, group = items[_DEMAND], items[_DUE], items[_GROUP]
    admitted = np.ones(len(order), dtype=np.bool_)
    sums = np.empty(len(order))  # running sums of the admitted work in due order, valid before `start`
    given, start = 0, 0
    while given < max_rejections:
        first, run = -1, sums[start - 1] if start > 0 else 0.0
        for r in range(start, len(order)):
            run += demand[order[r]] * admitted[r]
            sums[r] = run
            if admitted[r] and run > max(due[order[r]] - now, 0.0) + 1e-9:
                first = r
                break
        if first < 0:
            break
        victim = -1
        for r in range(first + 1):
            if admitted[r] and (victim < 0 or items[_SCORE, order[r]] > items[_SCORE, order[victim]]):
                victim = r
        given += 1
        start = victim
        if group[order[victim]] < 0:
            admitted[victim] = False
            given_up[idx[int(items[_LIVE, order[victim]])]] = True
            continue
        given_up_group[int(group[order[victim]])] = True
        for r in range(len(order) - 1, -1, -1):  # the whole group; `start`: its first position
            if group[order[r]] == group[order[victim]]:
                admitted[r] = False
                start = r
    mask = np.empty(len(idx), dtype=np.bool_)
    for i in range(len(idx)):
        mask[i] = given_up[idx[i]] or (view_group[i] >= 0 and given_up_group[view_group[i]])
    return mask


@kernel
def _knapsack_columns(slack, doomed, cls, group, resident, kv_blocks, computed, release, now, t, swap, swap_time,
                      token_budget, gang_iterations, starvation_iterations, steps_mid, short_first, short_first_cap,
                      idle_value, urgency_horizon, weight_args):
    """The knapsack's per-request columns in one compiled call: `_key_and_value`'s key and value,
    signals.kv_weights_each's weights (`weight_args`: signals.kv_weight_args) and the runnable
    positions (released by now)."""
    key, values = _key_and_value(slack, doomed, cls, group, resident, kv_blocks, computed, release, now, t, swap,
                                 swap_time, token_budget, gang_iterations, starvation_iterations, steps_mid,
                                 short_first, short_first_cap, idle_value, urgency_horizon)
    runnable = np.flatnonzero(release <= now + 1e-12)
    return key, values, signals.kv_weights_each(*weight_args), runnable


@kernel
def _key_and_value(slack, doomed, cls, group, resident, kv_blocks, computed, release, now, t, swap, swap_time,
                   token_budget, gang_iterations, starvation_iterations, steps_mid, short_first, short_first_cap,
                   idle_value, urgency_horizon):
    """Per live request, the sort key (smaller runs first) and the knapsack value.

    Key: the slack; an urgent bulk group's runnable members (within `gang_iterations` of its
    smallest slack) share that smallest slack, so the group runs as a gang; a resident's key is
    lowered by what preempting it would cost (its swap round trip, or the recompute of its
    context); best effort (doomed or given up) after all feasible work, oldest first, and those
    waiting `starvation_iterations` promoted to the front. Value: the SLO lost by not running now
    (about 1 within `urgency_horizon` of its slack, falling with slack, 1e-3 once doomed) times
    (median / own remaining iterations)^short_first, capped at `short_first_cap`.
    """
    n = len(slack)
    median = np.median(steps_mid)
    key, values = slack.copy(), np.empty(n)
    top = -1
    for i in range(n):
        if cls[i] == signals.BULK and not doomed[i]:
            top = max(top, group[i])
    if top >= 0:
        group_min = np.full(top + 1, np.inf)
        for i in range(n):
            if cls[i] == signals.BULK and not doomed[i]:
                group_min[group[i]] = min(group_min[group[i]], slack[i])
        for i in range(n):
            if cls[i] == signals.BULK and not doomed[i] and group_min[group[i]] < gang_iterations * t:
                key[i] = group_min[group[i]]
    for i in range(n):
        if resident[i]:
            key[i] = key[i] - (2.0 * swap_time * kv_blocks[i] if swap else signals.prefill_iterations_at(computed[i], token_budget) * t)
        short = min(_power(median / steps_mid[i], short_first), short_first_cap)
        urgency = idle_value + 1.0 / (1.0 + max(slack[i], 0.0) / urgency_horizon)
        values[i] = (1e-3 if doomed[i] else urgency) * short
    if not doomed.any():
        return key, values
    oldest, scale = -np.inf, 0.0
    for i in range(n):
        oldest = max(oldest, now - release[i])
        if np.isfinite(key[i]):
            scale = max(scale, abs(key[i]))
    scale = max(scale, 1.0)
    for i in range(n):
        if doomed[i]:
            age = now - release[i]
            key[i] = 0.0 if age > starvation_iterations * t else 4.0 * scale + 1.0 - age / (oldest + 1.0)
    return key, values


@kernel
def _power(x, exponent):
    """x ** exponent with numpy's bits for an array raised to a scalar (numpy takes a shortcut
    for these exponents instead of calling pow)."""
    if exponent == 1.0:
        return x
    if exponent == 2.0:
        return x * x
    if exponent == 0.5:
        return np.sqrt(x)
    if exponent == -1.0:
        return 1.0 / x
    if exponent == 0.0:
        return 1.0
    return x ** exponent
