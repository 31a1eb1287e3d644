"""The per-slot KV relaxation (formulations/bounds/slot_relaxation.py) solved with CP-SAT.

Each token is a unit-length interval at its delivery slot, present iff its unit is met; KV
blocks, sequences and batch tokens are cumulative resources (CP-SAT's timetabling and energetic
propagators do the block-slot reasoning). Maximizing the met weight, CP-SAT's proven objective
bound is an upper bound on attainment at any moment, so a time limit only loosens it.
"""

from __future__ import annotations

import math

from ortools.sat.python import cp_model

from formulations.bounds.slot_relaxation import SlotRelaxation
from solvers.exact.cpsat import cpsat_bound, run_cpsat
from solvers.interrupt import StopToken
from solvers.result import Status


def slot_bound(rel: SlotRelaxation, time_limit: float, workers: int = 2) -> int | None:
    """An upper bound on the met weight, or None when CP-SAT proved nothing in time."""
    model = cp_model.CpModel()
    units = sorted({st.unit for st in rel.requests if st is not None})
    met = {u: model.NewBoolVar(f"met{u}") for u in units}
    intervals, kv = [], []
    last_slot: dict[int, cp_model.IntVar] = {}
    first_slot: dict[int, cp_model.IntVar] = {}
    for i, st in enumerate(rel.requests):
        if st is None:
            continue
        lit = met[st.unit]
        slots = [model.NewIntVar(int(a), int(b), f"k{i}_{j}") for j, (a, b) in enumerate(zip(st.first, st.last))]
        for j, k in enumerate(slots):
            if j:
                model.Add(k >= slots[j - 1] + 1)
            intervals.append(model.NewOptionalFixedSizeIntervalVar(k, 1, lit, f"iv{i}_{j}"))
            kv.append(int(st.kv[j]))
        first_slot[i], last_slot[i] = slots[0], slots[-1]
        if st.qoe is not None:
            _qoe(model, slots, int(st.last[-1]), st.qoe, rel.tau_ticks, lit)
    for i, st in enumerate(rel.requests):
        if st is None:
            continue
        for p in st.parents:
            if p in last_slot:
                model.Add(first_slot[i] >= last_slot[p] + st.prefill_slots).OnlyEnforceIf(met[st.unit])
    kv_cap, seqs, budget = rel.capacity
    model.AddCumulative(intervals, kv, kv_cap)
    if seqs < len(intervals):
        model.AddCumulative(intervals, [1] * len(intervals), seqs)
    if budget < len(intervals):
        model.AddCumulative(intervals, [1] * len(intervals), budget)
    model.Maximize(sum(int(rel.weight[u]) * met[u] for u in units))
    solver, status = run_cpsat(model, time_limit, workers, StopToken())
    if status == Status.INFEASIBLE:
        raise AssertionError("the slot relaxation always has the empty schedule")
    raw = cpsat_bound(solver)
    return None if raw is None else int(math.floor(raw + 1e-6))


def _qoe(model: cp_model.CpModel, slots, last: int, qoe, tau_t: int, lit) -> None:
    """Lateness of token j >= (k_j + 1) tau - ideal_j, a running maximum, summed <= budget."""
    ideal, budget = qoe
    top = max(0, (last + 1) * tau_t - int(ideal.min()))
    lateness = []
    for j, k in enumerate(slots):
        late = model.NewIntVar(0, top, f"late{j}")
        model.Add(late >= (k + 1) * tau_t - int(ideal[j]))
        if lateness:
            model.Add(late >= lateness[-1])
        lateness.append(late)
    model.Add(sum(lateness) <= budget).OnlyEnforceIf(lit)
