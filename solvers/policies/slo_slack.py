"""`slo`'s per-decision urgency estimate: slack, doom and admission due times of every live request.

One call computes everything a decision needs and returns it as a frozen `SlackEstimate`, so the
later stages (admission control, priority, batch selection) read its fields instead of attributes
left behind by an earlier call. The rules (all from predicted lengths, never true ones):
- latency: the latest delivery time of its next token that keeps the projected final QoE >= the
  threshold (signals.latest_next_token), planned with `latency_budget_share` of the allowed delay
  area at the predicted length that leaves the least room (signals.tightest_total), minus the
  iterations its next token needs. A stream past its planned share is urgent, not lost;
- throughput: deadline - now - (conservative-quantile remaining iterations) x iteration time;
- bulk: the same with a per-member deadline, the member's latest finish along the group's DAG
  (dag_deadlines.py).
A request out of reach even at the optimistic quantile is doomed (a bulk group: if any member is).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from formulations.online import EngineView, quantile_column
from solvers.policies import signals
from solvers.policies.dag_deadlines import GroupDeadlines
from solvers.policies.slo_params import SloParams


@dataclass(frozen=True)
class PendingMember:
    """A bulk member not released yet, as admission control counts it."""

    group: int
    due: float  # s: optimistic latest finish along its group's DAG
    duration: float  # s: shortest possible run (its prefill and one token)
    tokens: float  # its prompt and one output token


@dataclass(frozen=True)
class SlackEstimate:
    """Per live request (view positions) at one decision."""

    iteration: float  # s: typical iteration time (every resident decoding)
    slack: np.ndarray  # s: how long it can still wait before it must run every iteration
    doomed: np.ndarray  # bool: out of reach even at the optimistic length
    due: np.ndarray  # s (absolute): by when admission control needs its work done
    steps_hi: np.ndarray  # iterations to finish at the conservative length
    hi: np.ndarray  # tokens: conservative predicted total output length
    mid: np.ndarray  # tokens: median predicted total output length
    steps_mid: np.ndarray  # iterations to finish at the median length
    pending: tuple[PendingMember, ...]


def estimate(view: EngineView, params: SloParams, groups: GroupDeadlines) -> SlackEstimate:
    t = signals.typical_iteration(view)
    now = view.now
    levels = view.quantile_levels
    columns = [quantile_column(levels, params.conservative), quantile_column(levels, params.optimistic),
               quantile_column(levels, 0.5)]
    lengths = np.maximum(view.pred_quantiles.T[columns], view.generated + 1.0)  # rows: hi, lo, mid
    hi, lo, mid = lengths
    pre = signals.prefill_iterations(view)
    steps_hi, steps_lo, steps_mid = signals.steps_to_finish(view, lengths, pre)
    dur_hi = steps_hi * t
    dur_lo = steps_lo * t
    due, due_lo, pending = _bulk_deadlines(view, params, groups, t, dur_hi, dur_lo)
    slack = due - now - dur_hi
    doomed = due_lo - now - dur_lo < -1e-9
    bulk = view.cls == signals.BULK
    if bulk.any():  # all or nothing: one member out of reach dooms its group
        lost = np.zeros(len(view.groups) + 1, dtype=bool)
        lost[view.group[bulk & doomed]] = True
        doomed = np.where(bulk, lost[view.group], doomed)
    admission_due = due_lo  # admission judges feasibility: optimistic DAG latest finish times
    latency = view.cls == signals.LATENCY
    if latency.any():
        threshold, share = params.qoe_threshold, params.latency_budget_share
        first = np.maximum(pre, 1) * t
        # plan with a share of the delay budget at the tightest likely length; give up only
        # when even the full budget of the longest likely stream fails
        # (planned, latest, hope): one pass over the three (total, share) variants
        tight = signals.tightest_total(view, lo, hi, threshold, (share, 1.0))
        planned, latest, hope = signals.latest_next_token(view, t, np.vstack([tight, hi]), threshold,
                                                          (share, 1.0, 1.0))
        latest = np.where(np.isfinite(latest), latest, hope)
        # a stream past its planned share is behind plan (urgent), not lost
        need = np.where(np.isfinite(planned), planned, np.minimum(latest, now + first))
        slack = np.where(latency, need - now - first, slack)
        doomed = np.where(latency, hope - now - first < -1e-9, doomed)
        # admission judges the full budget; the last token is needed about (m - 1)/r after the next
        admission_due = np.where(latency, latest + (mid - view.generated - 1.0) / view.read_rate, due_lo)
    return SlackEstimate(iteration=t, slack=slack, doomed=doomed, due=admission_due, steps_hi=steps_hi, hi=hi,
                         mid=mid, steps_mid=steps_mid, pending=pending)


def _bulk_deadlines(view: EngineView, params: SloParams, groups: GroupDeadlines, t: float, dur_hi: np.ndarray,
                    dur_lo: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[PendingMember, ...]]:
    """Bulk members' DAG latest finish times, conservative and optimistic (view positions),
    plus the members not released yet."""
    bulk = np.flatnonzero(view.cls == signals.BULK)
    if not len(bulk) or not view.groups:
        return view.deadline, view.deadline, ()
    due = np.repeat(view.deadline[:, None], 2, axis=1)
    dur = np.stack([dur_hi, dur_lo], axis=1)
    pending: list[PendingMember] = []
    pos_of = dict(zip(view.idx[bulk].tolist(), bulk.tolist(), strict=True))
    budget = view.engine.token_budget
    pred = view.pred_quantiles[bulk]
    typical = np.median(np.stack([pred[:, quantile_column(view.quantile_levels, params.conservative)],
                                  pred[:, quantile_column(view.quantile_levels, params.optimistic)]], axis=1), axis=0)
    for g in np.unique(view.group[bulk]).tolist():
        group = view.groups[g]
        durations = np.zeros((len(group.members), 2))
        unreleased = []
        for k, member in enumerate(group.members.tolist()):
            pos = pos_of.get(member)
            if group.done[k]:
                continue
            if pos is not None:
                durations[k] = dur[pos]
            else:  # not released yet, no prediction seen: the group's typical length for its
                # priority, the shortest possible run (prefill + 1 token) for doom and admission
                prefill = -(-int(group.prompt_len[k]) // budget)
                durations[k] = ((prefill + typical[0] - 1.0) * t, prefill * t)
                unreleased.append(k)
        lf = groups.member_deadlines(group, durations)
        for k, member in enumerate(group.members.tolist()):
            pos = pos_of.get(member)
            if pos is not None:
                due[pos] = np.minimum(lf[k], group.deadline)
        pending.extend(PendingMember(g, float(lf[k, 1]), float(durations[k, 1]), float(group.prompt_len[k] + 1))
                       for k in unreleased)
    return due[:, 0], due[:, 1], tuple(pending)
