"""The per-slot KV relaxation (formulations/bounds/slot_relaxation.py) as a time-indexed LP (HiGHS).

CP-SAT (slot_cpsat.py) reasons about the relaxation's block-slots by propagation and search; on
instances where KV is tight for the whole horizon (examples/tight-kv-40x200.json) it proves
nothing better than the interval bound in a minute. The LP relaxation of the time-indexed model
spreads each unit's tokens over their slots fractionally but keeps every slot's capacity, which
is exactly the reasoning that instance needs, and an interior-point solve takes seconds.

Variables, per request and output token j with delivery window [a_j, b_j] (slots): X[j, t] in
[0, 1] for a_j <= t < b_j, "token j delivered by slot t" (X[j, b_j] is the unit's y, X[j, a_j - 1]
is 0); per unit y in [0, 1]; per stream token a lateness l_j >= 0. Rows:
- X[j, t] <= X[j, t + 1] (delivered stays delivered) and X[j, t] <= X[j - 1, t - 1] (one token per
  slot, in order);
- per slot t and resource (KV blocks, sequences, batch tokens): the sum over tokens of
  demand_j * (X[j, t] - X[j, t - 1]) <= capacity (a token delivered in slot t holds its blocks,
  a sequence and at least one batch token there);
- streams: with K_j = sum_t (t + 1) (X[j, t] - X[j, t - 1]) = (b_j + 1) y - sum_{t < b_j} X[j, t]
  (the slot after delivery), l_j >= tau K_j - ideal_j y, l_j >= l_{j-1}, sum_j l_j <= budget y:
  the relaxation's QoE recursion, scaled by y (y = 0 leaves every l at 0);
- DAG edges inside one unit: K of the child's first token >= K of the parent's last + its
  prefill slots times y.
Every integer point of these rows is a point of the slot relaxation (X is the cumulative of its
delivery slots), so the LP optimum bounds the relaxation's optimum, which bounds hindsight
attainment.

The bound is not the solver's objective but the Lagrangian value of its row duals: for any
multipliers lam (of the right signs), c x <= lam b + max over the column box of (c - A^T lam) x,
so an inexact dual still gives a valid bound, only a weaker one. That lets HiGHS' first-order
solver (PDLP) stop at a loose tolerance (3e-3 on examples/tight-kv-40x200.json: bound 36.81
against the optimum 36.55, 3,600 iterations, 14-16 s on 2 cores shared at load 8-15, where the
interior point took 28-47 s); a tighter PDLP run, then the interior point (at HiGHS' default
tolerance), follow only while the bound is not within the same integer as PDLP's objective.
The bound is rounded down after adding INTEGER_ROUNDING, so float noise never turns 7 into 6.
"""

from __future__ import annotations

import math
import time

import highspy
import numpy as np

from formulations.bounds.slot_relaxation import SlotRelaxation, SlotTokens
from solvers.bounds import INTEGER_ROUNDING
from solvers.exact.highs import quiet_stdout

FRACTION = 1e-6  # a unit value within this of 0 or 1 counts as integral
MAX_SLOT_VARIABLES = 400_000  # larger relaxations are not written down (memory, and minutes of IPM)
FIRST_ORDER_TOLERANCES = (3e-3, 1e-4)  # PDLP's KKT tolerances, tried in turn until its dual certifies the floor
DIVE_TOLERANCE = 1e-2  # PDLP's in the dive, which needs unit values, not a proof
EXACT_TOLERANCE = 1e-7  # HiGHS' default, for the interior point when PDLP's dual is too loose to certify the floor


class _Columns:
    """Column bookkeeping: bounds and objective as growing lists, one index per variable."""

    def __init__(self) -> None:
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.cost: list[float] = []

    def add(self, count: int, upper: float = 1.0, cost: float = 0.0) -> np.ndarray:
        first = len(self.lower)
        self.lower.extend([0.0] * count)
        self.upper.extend([upper] * count)
        self.cost.extend([cost] * count)
        return np.arange(first, first + count)


class _Rows:
    """Rows as (lower, upper, columns, coefficients), gathered into one sparse matrix at the end."""

    def __init__(self) -> None:
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []

    def add(self, lower: float, upper: float, cols, vals) -> None:
        """A row; a column listed twice (a unit's y in two delivery times) gets the sum."""
        cols, vals = np.asarray(cols, dtype=np.int32), np.asarray(vals, dtype=np.float64)
        if len(set(cols.tolist())) < len(cols):
            cols, inverse = np.unique(cols, return_inverse=True)
            vals = np.bincount(inverse, weights=vals, minlength=len(cols))
        self.lower.append(lower)
        self.upper.append(upper)
        self.cols.append(cols)
        self.vals.append(vals)

    def pairs(self, first: np.ndarray, second: np.ndarray) -> None:
        """first[k] - second[k] <= 0 for every k."""
        for a, b in zip(first.tolist(), second.tolist(), strict=True):
            self.add(-math.inf, 0.0, (a, b), (1.0, -1.0))


class _Token:
    """One token's cumulative columns: X[t] for t in [a, b] (the last is the unit's y)."""

    def __init__(self, a: int, b: int, cols: np.ndarray) -> None:
        self.a, self.b, self.cols = a, b, cols

    def at(self, t: int) -> int | None:
        """The column of X[t]; None: 0 (before the window)."""
        if t < self.a:
            return None
        return int(self.cols[min(t, self.b) - self.a])

    def delivery(self) -> tuple[np.ndarray, np.ndarray]:
        """(columns, coefficients) of K = (b + 1) y - sum_{t < b} X[t]."""
        coef = np.full(len(self.cols), -1.0)
        coef[-1] = self.b + 1.0
        return self.cols, coef


def slot_lp_bound(rel: SlotRelaxation, time_limit: float) -> int | None:
    """An upper bound on the met weight; None when the LP is too large to write down or HiGHS
    does not reach its optimum within `time_limit` seconds."""
    return SlotLp(rel).solve(time_limit)


class SlotLp:
    """The LP written down once; `solve` may run in a thread (HiGHS releases the GIL) while
    another thread calls `cancel`."""

    def __init__(self, rel: SlotRelaxation) -> None:
        self.trivial: int | None = None  # the bound when no LP is needed (nothing can be met)
        self.highs: highspy.Highs | None = None
        self.lagrangian: _Lagrangian | None = None
        self.last: float | None = None  # the last proven LP bound (`_optimum`), before rounding
        self.units: list[int] = sorted({st.unit for st in rel.requests if st is not None})  # y's columns, in order
        self.weight = rel.weight
        self.fixed = False  # some y fixed by `dive`: the optimum is no bound any more
        if not self.units:
            self.trivial = 0
        elif sum(int((st.last - st.first).sum()) for st in rel.requests if st is not None) <= MAX_SLOT_VARIABLES:
            cols, rows = _write(rel, self.units)
            self.highs, self.lagrangian = _highs(cols, rows), _Lagrangian(cols, rows)

    def solve(self, time_limit: float) -> int | None:
        """The bound: the LP optimum rounded down (None: no optimum within `time_limit` s)."""
        if self.fixed:
            raise RuntimeError("the LP has units fixed by a dive: its optimum bounds nothing")
        if self.highs is None:
            return self.trivial
        value = self._optimum(time_limit)
        return None if value is None else int(math.floor(value + INTEGER_ROUNDING))

    def dive(self, time_limit: float, steps: int = 3, found: list[frozenset[int]] | None = None) -> list[frozenset[int]]:
        """Sets of units worth trying to meet all together, by diving from the LP optimum (call
        `solve` first): round the optimum (units by value, largest first, as far as its floor
        allows), then fix the fractional units at >= 0.5 (or the largest) met, solve again and
        round that, while the floor holds and some unit is fractional. The distinct roundings,
        in the order found (appended to `found` as they come: another thread may read it while
        the next LP runs). A heuristic: any set may be infeasible; it fixes columns, so `solve`
        bounds nothing afterwards."""
        deadline = time.perf_counter() + time_limit
        floor = math.floor(self.last + INTEGER_ROUNDING)
        values = self._unit_values()
        found = [] if found is None else found
        found.append(self._rounded(values, floor))
        for _ in range(steps):
            fractional = {u: v for u, v in values.items() if FRACTION < v < 1 - FRACTION}
            if not fractional:
                break
            up = [u for u, v in fractional.items() if v >= 0.5] or [max(fractional, key=fractional.get)]
            for u in up:
                self.highs.changeColBounds(self.units.index(u), 1.0, 1.0)
            self.fixed = True
            value = self._primal(deadline - time.perf_counter())
            if value is None or value + DIVE_TOLERANCE * max(1.0, abs(value)) < floor:
                break  # infeasible, out of time, or the floor fell (beyond PDLP's error)
            values = self._unit_values()
            rounded = self._rounded(values, floor)
            if rounded not in found:
                found.append(rounded)
        return found

    def _optimum(self, time_limit: float) -> float | None:
        """A proven upper bound on the LP optimum (None: none within `time_limit` s): the
        Lagrangian value of PDLP's dual at the first of FIRST_ORDER_TOLERANCES where it has the
        floor of PDLP's objective, else the smallest found, the interior point's included."""
        deadline = time.perf_counter() + time_limit
        found = []
        for solver, tolerance in [("pdlp", t) for t in FIRST_ORDER_TOLERANCES] + [("ipm", EXACT_TOLERANCE)]:
            value = self._run(solver, tolerance, deadline - time.perf_counter())
            if value is None:
                continue
            found.append(value)
            objective = self.highs.getInfo().objective_function_value
            if math.floor(value + INTEGER_ROUNDING) <= math.floor(objective + INTEGER_ROUNDING):
                break
        self.last = min(found) if found else None
        return self.last

    def _run(self, solver: str, tolerance: float, time_limit: float) -> float | None:
        """HiGHS' `solver` to `tolerance`; the Lagrangian bound of its duals (None: no optimum in time)."""
        if self._primal(time_limit, solver, tolerance) is None:
            return None
        return self.lagrangian.bound(np.asarray(self.highs.getSolution().row_dual))

    def _primal(self, time_limit: float, solver: str = "pdlp", tolerance: float = DIVE_TOLERANCE) -> float | None:
        """HiGHS' `solver` to `tolerance`; its objective (None: no optimum within `time_limit` s)."""
        if time_limit <= 0.01:
            return None
        h = self.highs
        for option, value in (("solver", solver), ("kkt_tolerance", tolerance), ("time_limit", float(time_limit))):
            h.setOptionValue(option, value)
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        return h.getInfo().objective_function_value

    def _unit_values(self) -> dict[int, float]:
        y = self.highs.getSolution().col_value[: len(self.units)]
        return dict(zip(self.units, (float(v) for v in y), strict=True))

    def _rounded(self, values: dict[int, float], cap: int) -> frozenset[int]:
        """Units by value, largest first (ties: lower unit), taken while their weight fits `cap`."""
        chosen, weight = [], 0
        for u in sorted(values, key=lambda u: (-values[u], u)):
            w = int(self.weight[u])
            if values[u] > FRACTION and weight + w <= cap:
                chosen.append(u)
                weight += w
        return frozenset(chosen)

    def cancel(self) -> None:
        if self.highs is not None:
            self.highs.cancelSolve()


class _Lagrangian:
    """The LP's data as arrays, to turn any row multipliers into a proven bound (module docstring).

    With HiGHS' sign convention for a maximization, lam_i > 0 prices row i's upper side and lam_i
    < 0 its lower side; a multiplier on an infinite side is dropped (set to 0), which keeps the
    bound valid. Every column has a finite box (the lateness columns' upper bound is the budget),
    so the column part is finite."""

    def __init__(self, cols: _Columns, rows: _Rows) -> None:
        self.cost = np.array(cols.cost)
        self.lower, self.upper = np.array(cols.lower), np.array(cols.upper)
        self.row_lower, self.row_upper = np.array(rows.lower), np.array(rows.upper)
        self.row_of = np.repeat(np.arange(len(rows.cols)), [len(c) for c in rows.cols])
        self.col_of = np.concatenate(rows.cols) if rows.cols else np.empty(0, np.int64)
        self.coef = np.concatenate(rows.vals) if rows.vals else np.empty(0)

    def bound(self, lam: np.ndarray) -> float:
        lam = np.where(((lam > 0) & np.isinf(self.row_upper)) | ((lam < 0) & np.isinf(self.row_lower)), 0.0, lam)
        rows = np.where(lam > 0, lam * np.nan_to_num(self.row_upper, posinf=0.0),
                        lam * np.nan_to_num(self.row_lower, neginf=0.0)).sum()
        reduced = self.cost - np.bincount(self.col_of, weights=lam[self.row_of] * self.coef, minlength=len(self.cost))
        return float(rows + np.maximum(reduced * self.lower, reduced * self.upper).sum())


def _write(rel: SlotRelaxation, units: list[int]) -> tuple[_Columns, _Rows]:
    """The LP's columns and rows; the first columns are the units' y, in `units`' order."""
    cols, rows = _Columns(), _Rows()
    y = dict(zip(units, cols.add(len(units)).tolist(), strict=True))
    for u in units:
        cols.cost[y[u]] = float(rel.weight[u])
    per_slot: dict[int, list[tuple[int, int, int]]] = {}  # slot -> (column, sign, token key)
    demands: list[tuple[int, int, int]] = []  # per token key: kv blocks, 1 sequence, 1 token
    tokens: dict[int, list[_Token]] = {}
    for i, st in enumerate(rel.requests):
        if st is not None:
            tokens[i] = _request_rows(st, y[st.unit], rel.tau_ticks, cols, rows, per_slot, demands)
    for i, st in enumerate(rel.requests):
        if st is not None:
            _dag_rows(rel, st, tokens, i, y[st.unit], rows)
    _capacity_rows(per_slot, np.array(demands, dtype=np.float64), rel.capacity, rows)
    return cols, rows


def _request_rows(st: SlotTokens, y: int, tau: int, cols: _Columns, rows: _Rows, per_slot: dict,
                  demands: list) -> list[_Token]:
    """One request's columns and rows; its tokens' entries of the per-slot capacity rows go to `per_slot`."""
    toks: list[_Token] = []
    for j, (a, b) in enumerate(zip(st.first.tolist(), st.last.tolist(), strict=True)):
        tok = _Token(a, b, np.append(cols.add(b - a), y))
        rows.pairs(tok.cols[:-2], tok.cols[1:-1])  # X[t] <= X[t + 1]; X[b - 1] <= y below
        if b > a:
            rows.add(-math.inf, 0.0, (tok.cols[-2], y), (1.0, -1.0))
        if toks:  # X[j, t] <= X[j - 1, t - 1]
            prev = toks[-1]
            for t in range(a, b + 1):
                mine, before = tok.at(t), prev.at(t - 1)
                if before is None:
                    if mine == y:
                        rows.add(-math.inf, 0.0, (y,), (1.0,))
                    else:
                        cols.upper[mine] = 0.0
                elif mine != before:
                    rows.add(-math.inf, 0.0, (mine, before), (1.0, -1.0))
        key = len(demands)
        demands.append((int(st.kv[j]), 1, 1))
        for t in range(a, b + 1):  # delivered in slot t: X[t] - X[t - 1]
            per_slot.setdefault(t, []).append((tok.at(t), 1, key))
            if t > a:
                per_slot[t].append((tok.at(t - 1), -1, key))
        toks.append(tok)
    if st.qoe is not None:
        _qoe_rows(st.qoe, tau, toks, y, cols, rows)
    return toks


def _qoe_rows(qoe: tuple[np.ndarray, int], tau: int, toks: list[_Token], y: int, cols: _Columns,
              rows: _Rows) -> None:
    """l_j >= tau K_j - ideal_j y (in ticks), l_j >= l_{j-1}, sum_j l_j <= budget y."""
    ideal, budget = qoe
    late = cols.add(len(toks), upper=float(budget))  # l_j <= sum_j l_j <= budget y: a finite box for _Lagrangian
    for j, tok in enumerate(toks):
        k_cols, k_coef = tok.delivery()
        coef = -tau * k_coef
        coef[-1] += float(ideal[j])  # the last column is y
        rows.add(0.0, math.inf, np.append(k_cols, late[j]), np.append(coef, 1.0))
        if j:
            rows.add(0.0, math.inf, (late[j], late[j - 1]), (1.0, -1.0))
    rows.add(-math.inf, 0.0, np.append(late, y), np.append(np.ones(len(toks)), -float(budget)))


def _dag_rows(rel: SlotRelaxation, st: SlotTokens, tokens: dict, i: int, y: int, rows: _Rows) -> None:
    for p in st.parents:
        parent = rel.requests[p]
        if parent is None or parent.unit != st.unit:  # across units the relaxation has no row to scale by y
            continue
        c_cols, c_coef = tokens[i][0].delivery()
        p_cols, p_coef = tokens[p][-1].delivery()
        rows.add(0.0, math.inf, np.concatenate([c_cols, p_cols, [y]]),
                 np.concatenate([c_coef, -p_coef, [-float(st.prefill_slots)]]))


def _capacity_rows(per_slot: dict, demands: np.ndarray, capacity: tuple[int, int, int], rows: _Rows) -> None:
    for t in sorted(per_slot):
        entries = per_slot[t]
        col = np.array([c for c, _, _ in entries], dtype=np.int64)
        sign = np.array([s for _, s, _ in entries], dtype=np.float64)
        key = np.array([k for _, _, k in entries], dtype=np.int64)
        delivering = len(set(key.tolist()))
        for res, cap in enumerate(capacity):
            if res and cap >= delivering:  # sequences / batch tokens cannot bind in this slot
                continue
            merged, inverse = np.unique(col, return_inverse=True)
            coef = np.bincount(inverse, weights=sign * demands[key, res], minlength=len(merged))
            keep = coef != 0
            rows.add(-math.inf, float(cap), merged[keep], coef[keep])


def _highs(cols: _Columns, rows: _Rows) -> highspy.Highs:
    """HiGHS holding the LP (no crossover: the bound needs duals, not a vertex; the solver is
    chosen per run by SlotLp._run)."""
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = len(cols.lower), len(rows.lower)
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cols.cost, cols.lower, cols.upper
    lp.row_lower_ = [-highspy.kHighsInf if math.isinf(v) else v for v in rows.lower]
    lp.row_upper_ = [highspy.kHighsInf if math.isinf(v) else v for v in rows.upper]
    lp.sense_ = highspy.ObjSense.kMaximize
    matrix = lp.a_matrix_
    matrix.format_ = highspy.MatrixFormat.kRowwise
    matrix.num_col_, matrix.num_row_ = lp.num_col_, lp.num_row_
    matrix.start_ = np.concatenate([[0], np.cumsum([len(c) for c in rows.cols])]).astype(np.int32)
    matrix.index_ = np.concatenate(rows.cols).astype(np.int32) if rows.cols else np.empty(0, np.int32)
    matrix.value_ = np.concatenate(rows.vals) if rows.vals else np.empty(0)
    with quiet_stdout():  # the constructor prints HiGHS' banner from C++
        h = highspy.Highs()
    for option, value in (("output_flag", False), ("run_crossover", "off")):
        h.setOptionValue(option, value)
    h.HandleUserInterrupt = True  # cancelSolve() stops the interior point at its next iteration
    if h.passModel(lp) != highspy.HighsStatus.kOk:
        raise AssertionError("HiGHS refused the slot LP")
    return h
