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

from dataclasses import dataclass

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import EMPTY, EngineView, Plan, Policy
from solvers.compiled import kernel
from solvers.knapsack.greedy import best_of_greedy, density_order, greedy_knapsack
from solvers.policies import batching, signals
from solvers.policies.dag_deadlines import GroupDeadlines
from solvers.policies.offered_load import OfferedLoad
from solvers.policies.per_request import grown
from solvers.policies.slo_params import SloParams
from solvers.policies.slo_slack import SlackEstimate, estimate


@dataclass(frozen=True)
class StepKnapsack:
    """One step's selection problem: items are live requests (view positions)."""

    values: np.ndarray
    weights: np.ndarray  # (n, 2): KV blocks after the step, tokens this step
    capacities: np.ndarray  # (kv_blocks, token_budget)
    max_items: int
    order: np.ndarray  # runnable positions, highest priority first
    key: np.ndarray  # sort key (smaller runs first)
    estimate: SlackEstimate
    given_up: np.ndarray  # bool: admission control gave up on it (this decision or before)
    doomed: np.ndarray  # bool: doomed or given up (best effort from now on)


def _median(values: np.ndarray) -> float:
    """np.median of a non-empty vector by one partition (np.median's generic path costs several
    times more on the few dozen requests of a typical decision); same value: the mean of the
    two middle elements."""
    n = len(values)
    mid = np.partition(values, ((n - 1) // 2, n // 2))
    return float((mid[(n - 1) // 2] + mid[n // 2]) / 2.0)


class SloPolicy(Policy):
    name = "slo"
    Params = SloParams

    def __init__(self, **params: object) -> None:
        self.params = SloParams(**params)
        self._load = OfferedLoad()
        self._groups = GroupDeadlines()
        self._given_up = np.zeros(0, dtype=bool)  # per request index
        self._given_up_group = np.zeros(0, dtype=bool)  # per group index (+1: "no group", never set)

    def reset(self, engine: EngineSpec) -> None:
        self._load.clear()
        self._groups.clear()
        self._given_up = np.zeros(0, dtype=bool)
        self._given_up_group = np.zeros(0, dtype=bool)

    def slack(self, view: EngineView) -> SlackEstimate:
        """Slack, doom and due times of every live request (slo_slack.py)."""
        return estimate(view, self.params, self._groups)

    # ---- admission ------------------------------------------------------------------------------
    def _admission(self, view: EngineView, est: SlackEstimate) -> np.ndarray:
        """Requests given up on (this decision or before) because the SLO work cannot all fit
        (`_give_ups`, at most `max_rejections` per decision to keep decide() cheap)."""
        self._given_up = grown(self._given_up, int(view.idx.max()) + 1, fill=False)
        self._given_up_group = grown(self._given_up_group, len(view.groups) + 1, fill=False)
        given_up = self._given_up_mask(view)
        eligible = ~(est.doomed | given_up) & (view.release <= view.now + 1e-12)
        pend = [p for p in est.pending if not self._given_up_group[p.group]]
        if not pend and not eligible.any():
            return given_up
        group = np.where(view.cls == signals.BULK, view.group, -1)
        if pend:  # not released yet: their prompt's prefill and one token, at the least
            group = np.concatenate([group, np.array([p.group for p in pend], dtype=np.int64)])
        slot, slot_size = self._group_slots(view, group)
        positions, groups = _give_ups(
            signals.engine_costs(view.engine), view.now, est.iteration, eligible, est.hi, view.generated,
            view.prompt_len, view.prefill_after_hits(), est.steps_hi, est.due,
            np.array([p.tokens for p in pend]), np.array([p.duration for p in pend]),
            np.array([p.due for p in pend]), group, slot, slot_size, self.params.max_rejections)
        if not len(positions):
            return given_up
        self._given_up_group[groups[groups >= 0]] = True
        self._given_up[view.idx[positions[groups < 0]]] = True
        return self._given_up_mask(view)

    @staticmethod
    def _group_slots(view: EngineView, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per admission item, a slot shared by its bulk group's items (items outside a group share
        one too, unused), and each slot's group size: only the groups with live members are read."""
        if not (group >= 0).any():
            return np.zeros(len(group), dtype=np.int64), np.ones(1)
        ids, slot = np.unique(group, return_inverse=True)
        sizes = np.array([len(view.groups[g].members) if g >= 0 else 1 for g in ids.tolist()], dtype=np.float64)
        return slot.astype(np.int64), sizes

    def _given_up_mask(self, view: EngineView) -> np.ndarray:
        mask = self._given_up[view.idx]
        if not view.groups:
            return mask
        return mask | (view.group >= 0) & self._given_up_group[np.maximum(view.group, 0)]

    # ---- decision --------------------------------------------------------------------------------
    def knapsack_inputs(self, view: EngineView) -> StepKnapsack:
        """This step's batch-selection problem (also what the gap study hands the exact solver)."""
        params = self.params
        est = self.slack(view)
        given_up = self._admission(view, est) if params.admission else np.zeros(len(view), dtype=bool)
        doomed = est.doomed | given_up
        engine = view.engine
        key, values = _key_and_value(
            est.slack, doomed, view.cls, view.group, view.resident, view.kv_blocks, view.computed, view.release,
            view.now, est.iteration, engine.preemption == "swap", engine.swap_time_per_block, engine.token_budget,
            params.gang_iterations, params.starvation_iterations, est.steps_mid, _median(est.steps_mid),
            params.short_first, params.short_first_cap, params.idle_value, params.urgency_horizon)
        runnable = view.release <= view.now + 1e-12
        order = batching.order_by(key, view.arrival)
        order = order[runnable[order]]
        blocks, tokens = signals.kv_weights(view)
        return StepKnapsack(
            values=values, weights=np.stack([blocks, tokens], axis=1),
            capacities=np.array([view.engine.kv_blocks, view.engine.token_budget], dtype=np.float64),
            max_items=view.engine.max_seqs, order=order, key=key, estimate=est, given_up=given_up, doomed=doomed,
        )

    def _evictions(self, view: EngineView, step: StepKnapsack, chosen: np.ndarray,
                   overloaded: bool) -> tuple[np.ndarray, np.ndarray]:
        """Preempt only what pays, and only to admit waiting requests that are urgent (slack below
        `preempt_margin_iterations`): residents that are best effort, or whose slack after paying
        their recompute still covers the longest urgent newcomer's whole run (they can wait it
        out), or, when the engine is overloaded, exceeds the margin. Admissions that cannot be
        made that way are dropped, lowest priority first, and the residents keep running."""
        need = batching.shortfall(view, chosen, step.weights[:, 0])
        if need <= 0:  # the batch fits as it is
            return chosen, EMPTY
        est = step.estimate
        margin = self.params.preempt_margin_iterations * est.iteration
        admitted = np.flatnonzero(chosen & ~view.resident)
        urgent = (est.slack[admitted] < margin) & ~step.doomed[admitted]
        wait_out = float(est.steps_hi[admitted[urgent]].max()) * est.iteration if urgent.any() else np.inf
        cand = view.resident & ~chosen & (step.doomed | (step.key > (margin if overloaded else wait_out)))
        rank = np.where(cand, step.key, -np.inf)
        victims = batching.enough(*batching.eviction_order(view, chosen, rank, need), need)
        if len(victims) == 0 or (np.all(cand[victims]) and urgent.all()):
            return chosen, victims
        # too costly: keep the urgent admissions only, as far as the evictable blocks allow
        chosen = chosen.copy()
        pos_rank = np.empty(len(view))
        pos_rank[step.order] = np.arange(len(step.order))
        chosen[admitted[~urgent]] = False
        ranked = freed = None  # dropping admissions leaves the eviction ranking as it is
        for req in admitted[urgent][np.argsort(-pos_rank[admitted[urgent]])]:
            need = batching.shortfall(view, chosen, step.weights[:, 0])
            if need <= 0:
                break
            if ranked is None:
                ranked, freed = batching.eviction_order(view, chosen, rank, need)
            if np.all(cand[batching.enough(ranked, freed, need)]):
                break
            chosen[req] = False
        # residents fill the room the dropped admissions leave
        rest = step.order[view.resident[step.order] & ~chosen[step.order]]
        used = step.weights[chosen].sum(axis=0)
        more = greedy_knapsack(step.values[rest], step.weights[rest], step.capacities - used,
                               max_items=max(step.max_items - int(chosen.sum()), 0), order=np.arange(len(rest)))
        chosen[rest[more]] = True
        victims = batching.victims(view, chosen, rank, step.weights[:, 0])
        return chosen, victims[cand[victims]]

    def _rank(self, step: StepKnapsack, overloaded: bool) -> np.ndarray:
        """Runnable positions in the order the batch selection walks them: by value density when
        it packs by density ("auto" above `overload_at`, or "density"), else least slack first.
        The spare-budget fill walks the same order, so it continues the selection's own greedy."""
        selection, order = self.params.selection, step.order
        if selection == "density" or (selection == "auto" and overloaded):
            return order[density_order(step.values[order], step.weights[order], step.capacities)]
        return order

    def _select(self, step: StepKnapsack, rank: np.ndarray) -> np.ndarray:
        """Positions taken by the knapsack, by the selection rule in force (`rank`: _rank's)."""
        order, values, weights, caps = step.order, step.values, step.weights, step.capacities
        selection = self.params.selection
        if selection in ("auto", "priority"):  # above overload_at, "auto" walks the density rank: one pass
            return greedy_knapsack(values, weights, caps, max_items=step.max_items, order=rank)
        if selection == "density":
            return order[best_of_greedy(values[order], weights[order], caps, max_items=step.max_items)]
        from formulations.exact.knapsack import KnapsackProblem
        from solvers.knapsack.cpsat import solve_cpsat

        problem = KnapsackProblem(values[order], weights[order].astype(np.int64), caps.astype(np.int64),
                                  max_items=step.max_items)
        return order[solve_cpsat(problem).taken]

    def decide(self, view: EngineView) -> Plan:
        n = len(view)
        if n == 0:
            return Plan(run=EMPTY)
        overloaded = self._load.update(view) > self.params.overload_at
        everyone = batching.all_fit(view)
        if everyone is not None and not self._holds_given_up(view):
            return Plan(run=view.idx[everyone])
        step = self.knapsack_inputs(view)
        chosen = np.zeros(n, dtype=bool)
        rank = self._rank(step, overloaded)
        chosen[self._select(step, rank)] = True
        chosen, victims = self._evictions(view, step, chosen, overloaded)
        reject = np.flatnonzero(step.given_up) if self.params.reject else EMPTY
        if len(reject):  # rejected requests free their blocks themselves
            chosen[reject] = False
            victims = victims[~step.given_up[victims]]
        eligible = rank[~step.given_up[rank]] if self.params.reject else rank
        leaving = np.concatenate([victims, reject]) if len(reject) else victims  # both free their blocks now
        run_pos = batching.fill_budget(view, chosen, eligible, leaving, (step.weights[:, 0], step.weights[:, 1]))
        paused = (view.release <= view.now + 1e-12) & ~step.doomed
        paused[run_pos] = False
        recheck = None
        if paused.any():
            wake = view.now + float(step.estimate.slack[paused].min())
            recheck = wake if wake > view.now else None
        return Plan(run=view.idx[run_pos], preempt=view.idx[victims],
                    reject=view.idx[reject], recheck_at=recheck)

    def _holds_given_up(self, view: EngineView) -> bool:
        """Whether a live request belongs to a group given up on earlier (it must be rejected too;
        requests given up on alone are rejected at the decision that gives up on them)."""
        if not self.params.reject or not self._given_up_group.any():
            return False
        return bool(((view.group >= 0) & self._given_up_group[np.maximum(view.group, 0)]).any())


def _give_ups(costs, now, t, eligible, hi, generated, prompt_len, prefill, steps_hi, due, pending_tokens,
              pending_duration, pending_due, group, slot, slot_size, max_rejections):
    """Admission control's give-ups (`_moore_hodgson` over `_admission_items` in due order), at
    most `max_rejections`: the view position (-1 for a pending member) and group (-1: none) of
    each item given up, in order.

    Items: the `eligible` view positions, then the bulk members not released yet (`pending_*`:
    their prompt's prefill and one token, at the least). `group`/`slot`: per item (view positions
    first), -1 outside a bulk group; `slot_size`: the group size of each slot. The due order is
    numpy's stable sort (faster than a compiled merge sort).
    """
    live = np.flatnonzero(eligible)
    demand, item_due, item_group, score = _admission_items(costs, t, live, hi, generated, prompt_len, prefill,
                                                           steps_hi, due, pending_tokens, pending_duration,
                                                           pending_due, group, slot, slot_size)
    items = _moore_hodgson(np.argsort(item_due, kind="stable"), demand, item_due, item_group, score, now,
                           max_rejections)
    positions = np.full(len(items), -1, dtype=np.int64)  # -1: a pending member
    released = items < len(live)
    positions[released] = live[items[released]]
    return positions, item_group[items]


@kernel
def _admission_items(costs, t, live, hi, generated, prompt_len, prefill, steps_hi, due, pending_tokens,
                     pending_duration, pending_due, group, slot, slot_size):
    """Per admission item: its engine seconds (signals.engine_seconds_at), due time, group, and
    engine seconds per SLO met (a bulk group's work over its size: it meets one SLO per member or
    none; a lone request's own work)."""
    n_live, n_view = len(live), len(group) - len(pending_tokens)
    m = n_live + len(pending_tokens)
    demand, item_due = np.empty(m), np.empty(m)
    item_group, item_slot = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.int64)
    for k in range(m):
        i = live[k] if k < n_live else n_view + k - n_live  # row of `group` and `slot`
        if k < n_live:
            decode = hi[i] - generated[i]
            context = prompt_len[i] + generated[i] + decode / 2.0
            demand[k] = signals.engine_seconds_at(costs, float(prefill[i]), decode, context, steps_hi[i])
            item_due[k] = due[i]
        else:
            tokens = pending_tokens[k - n_live]
            demand[k] = signals.engine_seconds_at(costs, tokens - 1.0, 1.0, tokens, pending_duration[k - n_live] / t)
            item_due[k] = pending_due[k - n_live]
        item_group[k], item_slot[k] = group[i], slot[i]
    group_work = np.zeros(len(slot_size))
    for k in range(m):
        if item_group[k] >= 0:
            group_work[item_slot[k]] += demand[k]
    score = demand.copy()
    for k in range(m):
        if item_group[k] >= 0:
            score[k] = group_work[item_slot[k]] / slot_size[item_slot[k]]
    return demand, item_due, item_group, score


@kernel
def _moore_hodgson(order, demand, due, group, score, now, max_rejections):
    """Moore-Hodgson on an aggregate engine: in order of due time (`order`), the cumulative engine
    seconds of the admitted work must fit the time until each due time; at the first overflow the
    admitted item with the highest `score` is given up (with every item of its group, if any).
    The items given up, in order. The running sums are kept across give-ups and redone only from
    the first position a give-up changed (nothing before it moved)."""
    admitted = np.ones(len(order), dtype=np.bool_)
    sums = np.empty(len(order))  # running sums of the admitted work in due order, valid before `start`
    out = np.empty(max_rejections, dtype=np.int64)
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
            if admitted[r] and (victim < 0 or score[order[r]] > score[order[victim]]):
                victim = r
        out[given] = order[victim]
        given += 1
        start = victim
        if group[order[victim]] < 0:
            admitted[victim] = False
            continue
        for r in range(len(order) - 1, -1, -1):  # the whole group; `start`: its first position
            if group[order[r]] == group[order[victim]]:
                admitted[r] = False
                start = r
    return out[:given]


@kernel
def _key_and_value(slack, doomed, cls, group, resident, kv_blocks, computed, release, now, t, swap, swap_time,
                   token_budget, gang_iterations, starvation_iterations, steps_mid, median, short_first,
                   short_first_cap, idle_value, urgency_horizon):
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
            key[i] = key[i] - (2.0 * swap_time * kv_blocks[i] if swap else -(-computed[i] // token_budget) * t)
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
