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
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from formulations.online import EngineView, quantile_column
from solvers.compiled import kernel
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


class SlackEstimate(NamedTuple):
    """Per live request (view positions) at one decision (a tuple: cheap to build at every one)."""

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
    args, pending = estimate_args(view, params, groups)
    return as_estimate(args, *estimate_each(*args), pending)


def estimate_args(view: EngineView, params: SloParams,
                  groups: GroupDeadlines) -> tuple[tuple, tuple[PendingMember, ...]]:
    """What `estimate_each` reads, as one tuple (a kernel that goes on from the estimate takes it
    whole and unpacks it), and the bulk members not released yet."""
    t = signals.typical_iteration(view)
    prefill, budget = view.prefill_after_hits(), view.engine.token_budget
    columns = _quantile_columns(tuple(view.quantile_levels), params.conservative, params.optimistic)
    due, due_lo, pending = view.deadline, view.deadline, ()
    if view.groups and (view.cls == signals.BULK).any():
        lengths = _lengths(view.pred_quantiles, columns, view.generated, prefill, budget)
        due, due_lo, pending = _bulk_deadlines(view, params, groups, t, lengths)
    return (view.pred_quantiles, columns, view.generated, prefill, budget, view.now, t, view.cls, due, due_lo,
            view.arrival, view.ttft_target, view.read_rate, view.delay_area, view.lag, view.group,
            params.qoe_threshold, params.latency_budget_share), pending


def as_estimate(args: tuple, rows: np.ndarray, doomed: np.ndarray,
                pending: tuple[PendingMember, ...]) -> SlackEstimate:
    """The SlackEstimate of `estimate_each`'s matrix and doomed mask (`args`: estimate_args')."""
    return SlackEstimate(args[ITERATION], rows[SLACK], doomed, rows[ADMISSION_DUE], rows[STEPS_HI],
                         rows[HI], rows[MID], rows[STEPS_MID], pending)


@lru_cache(maxsize=16)
def _quantile_columns(levels: tuple[float, ...], conservative: float, optimistic: float) -> np.ndarray:
    """Columns of the conservative, optimistic and median quantiles (read-only)."""
    columns = np.array([quantile_column(levels, conservative), quantile_column(levels, optimistic),
                        quantile_column(levels, 0.5)])
    columns.setflags(write=False)
    return columns


HI, LO, MID, STEPS_HI, STEPS_LO, STEPS_MID, SLACK, ADMISSION_DUE = range(8)  # rows of estimate_each's matrix
ITERATION = 6  # the position of the iteration time in estimate_args' tuple


@kernel
def estimate_each(pred, columns, generated, prefill, budget, now, t, cls, due, due_lo, arrival, ttft_target,
                   read_rate, delay_area, lag, group, threshold, share):
    """Everything `estimate` computes per request in one compiled call: one matrix (rows HI ..
    ADMISSION_DUE: _lengths' six, then the slack and admission due time) and the doomed mask."""
    out = np.empty((8, len(generated)))
    out[:6] = _lengths(pred, columns, generated, prefill, budget)
    doomed = _slack_each(now, t, cls, due, due_lo, prefill, budget, out, arrival, ttft_target, generated, read_rate,
                         delay_area, lag, group, threshold, share)
    return out, doomed


@kernel
def _lengths(pred, columns, generated, prefill, budget):
    """Predicted total lengths at the conservative, optimistic and median quantiles (at least one
    more token than delivered) and the iterations each needs to finish: rows hi, lo, mid, then
    steps_hi, steps_lo, steps_mid (`prefill`: tokens left after prefix-cache hits). One quantile
    per pass over the rows, so each pass compiles to vector instructions."""
    n = len(generated)
    out, pre = np.empty((6, n)), np.empty(n)
    for i in range(n):
        pre[i] = signals.prefill_iterations_at(prefill[i], budget)
    for k in range(3):
        column, total, steps = columns[k], out[k], out[3 + k]
        for i in range(n):
            total[i] = max(pred[i, column], generated[i] + 1.0)
            steps[i] = signals.steps_to_finish_at(total[i], generated[i], pre[i])
    return out


@kernel
def _slack_each(now, t, cls, due, due_lo, prefill, budget, rows, arrival, ttft_target, generated, read_rate,
                delay_area, lag, group, threshold, share):
    """Doom of every live request (the rules of the module docstring). Its slack and admission due
    time go to rows SLACK and ADMISSION_DUE of `rows` (estimate_each's matrix, lengths filled
    in); `due`/`due_lo`: deadlines at the conservative and optimistic lengths (a bulk member's
    along its DAG)."""
    n = len(cls)
    slack, admission_due, doomed = rows[SLACK], rows[ADMISSION_DUE], np.empty(n, dtype=np.bool_)
    stream_slack, stream_hope, stream_due = _stream_each(now, t, prefill, budget, rows, arrival, ttft_target,
                                                         generated, read_rate, delay_area, lag, threshold, share)
    top = -1
    for i in range(n):
        if cls[i] == signals.BULK:
            top = max(top, group[i])
    lost = np.zeros(top + 2, dtype=np.bool_)  # per group of a live bulk member: one is doomed (last: no group)
    for i in range(n):
        if cls[i] == signals.LATENCY:
            slack[i], doomed[i], admission_due[i] = stream_slack[i], stream_hope[i] < -1e-9, stream_due[i]
            continue
        slack[i] = due[i] - now - rows[STEPS_HI, i] * t
        doomed[i] = due_lo[i] - now - rows[STEPS_LO, i] * t < -1e-9
        admission_due[i] = due_lo[i]  # admission judges feasibility: optimistic DAG latest finish times
        if cls[i] == signals.BULK and doomed[i]:
            lost[group[i] if group[i] >= 0 else top + 1] = True
    for i in range(n):  # all or nothing: one member out of reach dooms its group
        if cls[i] == signals.BULK:
            doomed[i] = lost[group[i] if group[i] >= 0 else top + 1]
    return doomed


@kernel
def _stream_each(now, t, prefill, budget, rows, arrival, ttft_target, generated, read_rate, delay_area, lag,
                 threshold, share):
    """A latency stream's slack, doom margin (< 0: doomed) and admission due time, computed for
    every row as if it were a stream (rows that are not get nan and are never read): one pass
    without branches, so it compiles to vector instructions, which is twice as fast as visiting
    the streams alone. Plan with a share of the delay budget at the tightest likely length; give
    up only when even the full budget of the longest likely stream fails."""
    n = len(generated)
    slack, hope_margin, admission_due = np.empty(n), np.empty(n), np.empty(n)
    hi_row, lo_row, mid_row = rows[HI], rows[LO], rows[MID]
    for i in range(n):
        g, rate, area, hi, lo = generated[i], read_rate[i], delay_area[i], hi_row[i], lo_row[i]
        first = max(signals.prefill_iterations_at(prefill[i], budget), 1) * t
        ideal = signals.next_token_ideal_at(arrival[i], ttft_target[i], g, rate)
        planned = signals.latest_next_token_at(ideal, g, rate, area, lag[i], t, signals.tightest_total_at(
            g, rate, area, lo, hi, share * (1.0 - threshold)), threshold, share)
        latest = signals.latest_next_token_at(ideal, g, rate, area, lag[i], t, signals.tightest_total_at(
            g, rate, area, lo, hi, 1.0 * (1.0 - threshold)), threshold, 1.0)
        hope = signals.latest_next_token_at(ideal, g, rate, area, lag[i], t, hi, threshold, 1.0)
        latest = latest if np.isfinite(latest) else hope
        # a stream past its planned share is behind plan (urgent), not lost
        need = planned if np.isfinite(planned) else min(latest, now + first)
        slack[i] = need - now - first
        hope_margin[i] = hope - now - first
        # admission judges the full budget; the last token is needed about (m - 1)/r after the next
        admission_due[i] = latest + (mid_row[i] - g - 1.0) / rate
    return slack, hope_margin, admission_due


def _bulk_deadlines(view: EngineView, params: SloParams, groups: GroupDeadlines, t: float,
                    lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[PendingMember, ...]]:
    """Bulk members' DAG latest finish times, conservative and optimistic (view positions),
    plus the members not released yet (`lengths`: _lengths')."""
    bulk = np.flatnonzero(view.cls == signals.BULK)
    due = np.repeat(view.deadline[:, None], 2, axis=1)
    dur = np.stack([lengths[STEPS_HI] * t, lengths[STEPS_LO] * t], axis=1)
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
                prefill = signals.prefill_iterations_at(int(group.prompt_len[k]), budget)
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
