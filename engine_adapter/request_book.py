"""What a real-engine bridge must remember per request that the engine itself does not.

vLLM knows token ids and computed-token counts; a policy also needs each request's SLO, its
reading lag and delay area so far, its group's progress, and the run needs every token's time to
rebuild a `Schedule`. `RequestBook` keeps those in numpy columns indexed by request index, is fed
by the scheduler's hooks (admission, preemption, tokens, finish, and the computed-token counts
vLLM leaves after each schedule, so that a step's view reads no request object), and builds the
`EngineView`. No vLLM import: it is tested on its own.
"""

from __future__ import annotations

import math

import numpy as np

from collections.abc import Callable

from engine_adapter.simulator.view import LazyView
from engine_adapter.slo_args import GroupSpec, SloArgs
from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, GroupState
from formulations.schedule import RequestTimeline, Schedule
from solvers.compiled import kernel


FOLD_EVERY = 256  # deliveries (engine steps) kept as arrays before their times go to the per-row lists


class RequestBook:
    """SLO state and timelines of every request seen by one engine run."""

    def __init__(self, quantile_levels: tuple[float, ...]) -> None:
        self.levels = tuple(quantile_levels)
        self.ids: list[str] = []
        self.slot_of: dict[int, int] = {}  # request index -> row
        self._rows = 0
        cap = 64
        self.index = np.zeros(cap, dtype=np.int64)
        self.cls = np.zeros(cap, dtype=np.int8)
        self.arrival = np.zeros(cap)
        self.release = np.zeros(cap)
        self.prompt_len = np.zeros(cap, dtype=np.int64)
        self.ttft_target = np.zeros(cap)
        self.read_rate = np.zeros(cap)
        self.deadline = np.zeros(cap)
        self.group = np.zeros(cap, dtype=np.int64)
        self.lag = np.zeros(cap)
        self.delay_area = np.zeros(cap)
        self.run_max = np.zeros(cap)  # max_j (delivered_j - (j-1)/r): the closed form of qoe.py
        self.delivered = np.zeros(cap, dtype=np.int64)
        # the engine's computed tokens as of its last schedule: set by the scheduler for the
        # requests it scheduled, 0 on preemption (kept here, not read back from every request)
        self.computed = np.zeros(cap, dtype=np.int64)
        self.admitted_at = np.zeros(cap)  # last time it became resident (engine victim order)
        self.preemption_count = np.zeros(cap, dtype=np.int64)
        self.pred = np.zeros((cap, len(self.levels)))
        self._token_times: list[list[float]] = []  # per row; deliveries not yet folded in are in _stamps
        self._stamps: list[tuple[np.ndarray, np.ndarray, float]] = []  # (rows, counts, t) per delivery
        self.admissions: list[list[float]] = []
        self.preemptions: list[list[float]] = []
        self.finish: list[float | None] = []
        self.rejected: dict[int, float] = {}  # row -> when the policy rejected it (Plan.reject)
        self.groups: list[GroupState] = []
        self.group_of: dict[str, int] = {}
        self._next_index = 0

    # ---- registration -----------------------------------------------------------------------
    def register(self, args: SloArgs, prompt_len: int, pred: np.ndarray) -> int:
        """Add a request; returns its index (args.index, or the next unused one)."""
        index = args.index if args.index is not None else self._fresh_index()
        if index in self.slot_of:
            raise ValueError(f"request {args.id!r}: index {index} is already used by {self.ids[self.slot_of[index]]!r}")
        if self._rows == len(self.index):
            self._grow()
        row = self._rows
        self._rows += 1
        self.slot_of[index] = row
        self.ids.append(args.id)
        self.index[row] = index
        self.cls[row] = args.cls
        self.arrival[row] = args.arrival
        self.release[row] = args.release
        self.prompt_len[row] = prompt_len
        self.ttft_target[row] = args.ttft_target
        self.read_rate[row] = args.read_rate
        self.deadline[row] = args.deadline
        self.group[row] = self._group_index(args.group) if args.group is not None else -1
        self.lag[row] = self.delay_area[row] = 0.0
        self.run_max[row] = -math.inf
        self.delivered[row] = 0
        self.computed[row] = 0
        self.admitted_at[row] = -np.inf
        self.preemption_count[row] = 0
        self.pred[row] = pred
        for log in (self._token_times, self.admissions, self.preemptions):
            log.append([])
        self.finish.append(None)
        return index

    def _fresh_index(self) -> int:
        while self._next_index in self.slot_of:
            self._next_index += 1
        return self._next_index

    def _group_index(self, spec: GroupSpec) -> int:
        if spec.id not in self.group_of:
            self.group_of[spec.id] = len(self.groups)
            self.groups.append(GroupState(
                id=spec.id, members=np.array(spec.members, dtype=np.int64),
                parents=[np.array(p, dtype=np.int64) for p in spec.parents], deadline=spec.deadline,
                prompt_len=np.array(spec.prompt_len, dtype=np.int64), done=np.zeros(len(spec.members), dtype=bool),
            ))
        return self.group_of[spec.id]

    def _grow(self) -> None:
        for name in ("index", "cls", "arrival", "release", "prompt_len", "ttft_target", "read_rate", "deadline", "group", "lag",
                     "delay_area", "run_max", "delivered", "computed", "admitted_at", "preemption_count", "pred"):
            old = getattr(self, name)
            new = np.zeros((2 * len(old),) + old.shape[1:], dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    # ---- events ------------------------------------------------------------------------------
    def row(self, index: int) -> int:
        return self.slot_of[index]

    def admitted(self, row: int, t: float) -> None:
        self.admissions[row].append(t)
        self.admitted_at[row] = t

    def preempted(self, row: int, t: float) -> None:
        self.preemptions[row].append(t)
        self.preemption_count[row] += 1
        self.computed[row] = 0

    def tokens(self, row: int, count: int, t: float) -> None:
        """`count` output tokens delivered at time t; updates the reading lag and delay area."""
        self.deliver(np.array([row], dtype=np.int64), np.array([count], dtype=np.int64), t)

    def one_token_each(self, rows: np.ndarray, t: float) -> None:
        """One token delivered at time t to each of `rows` (distinct)."""
        self.deliver(np.array(rows, dtype=np.int64), np.ones(len(rows), dtype=np.int64), t)

    def deliver(self, rows: np.ndarray, counts: np.ndarray, t: float) -> None:
        """`counts[k]` tokens delivered at time t to row `rows[k]` (distinct rows; -1: not one of
        this book's, skipped). Both arrays are kept, not copied: the caller leaves them as they
        are. One compiled call for a whole step's outputs, and the token times are appended to
        each request's list only when read (`token_times`): after a model step every numpy call
        costs 5-15 us (cold caches), and a Python loop over the step's requests as much again."""
        self._stamps.append((rows, counts, t))
        _deliver_tokens(rows, counts, t, self.cls, self.arrival, self.ttft_target, self.read_rate, self.run_max,
                        self.lag, self.delay_area, self.delivered)
        if len(self._stamps) >= FOLD_EVERY:  # a server that never reads them keeps a bounded backlog
            self._fold()

    @property
    def token_times(self) -> list[list[float]]:
        """Each row's token times so far (deliveries folded in when read: at the end of a run, or
        by a recorder at each finish, and every FOLD_EVERY deliveries)."""
        self._fold()
        return self._token_times

    def _fold(self) -> None:
        """Append the pending deliveries' times to each row's list."""
        times = self._token_times
        for rows, counts, t in self._stamps:
            for row, count in zip(rows.tolist(), counts.tolist()):
                if row >= 0:
                    times[row] += [t] * count
        self._stamps.clear()

    def reject(self, row: int, t: float) -> None:
        self.rejected[row] = t

    def finished(self, row: int, t: float) -> None:
        self.finish[row] = t
        g = self.group[row]
        if g >= 0:
            state = self.groups[g]
            state.done[state.members == self.index[row]] = True

    # ---- outputs -----------------------------------------------------------------------------
    def static_columns(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The view columns of `rows` that never change while a request lives (read-only: a
        caller may reuse them across steps while the live rows stay the same)."""
        cols = dict(idx=self.index[rows], cls=self.cls[rows], arrival=self.arrival[rows], release=self.release[rows],
                    prompt_len=self.prompt_len[rows], ttft_target=self.ttft_target[rows],
                    read_rate=self.read_rate[rows], deadline=self.deadline[rows], group=self.group[rows])
        for col in cols.values():
            col.setflags(write=False)
        return cols

    def view(self, *, now: float, rows: np.ndarray, generated: np.ndarray, computed: np.ndarray,
             prefill_left: np.ndarray, resident: np.ndarray, kv_blocks: np.ndarray, preemptions: np.ndarray,
             refine_rows: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], free_blocks: int,
             engine: EngineSpec, static: dict[str, np.ndarray] | None = None,
             cached: np.ndarray | None = None) -> EngineView:
        """The EngineView of the live requests at `rows` (engine progress given per row);
        `static`: `static_columns(rows)` kept from an earlier step with the same rows;
        `refine_rows(table, rows, generated)`: the predictor's conditioning of `pred_quantiles`
        (LengthPredictor.refine_rows).

        A `LazyView`: `pred_quantiles`, `lag` and `delay_area` are read only when the policy
        reads them (fcfs never does; the batch rules between events never ask a policy). Built
        by filling the instance dictionary directly: the frozen dataclass's __init__ assigns its
        24 fields one by one through object.__setattr__, a sizeable part of the bridge's per-step
        time (reading every field gives the full view; tests/test_request_book.py checks it)."""
        view = LazyView.__new__(LazyView)
        fields = view.__dict__
        fields.update(static if static is not None else self.static_columns(rows))
        fields.update(
            now=now, generated=generated, computed=computed, prefill_left=prefill_left, resident=resident,
            kv_blocks=kv_blocks, preemptions=preemptions, quantile_levels=self.levels, free_blocks=free_blocks,
            engine=engine, groups=self.groups, cached=cached,
        )
        object.__setattr__(view, "_builder", _LateColumns(self, rows, generated, refine_rows))
        return view

    def schedule(self, ids: list[str], *, iterations: int, meta: dict) -> Schedule:
        """Timelines of the requests named `ids` (in that order: an Instance's order)."""
        row_of_id = {rid: row for row, rid in enumerate(self.ids)}
        missing = [rid for rid in ids if rid not in row_of_id]
        if missing:
            raise ValueError(f"the engine never saw request(s) {missing[:5]} ({len(missing)} in all)")
        timelines = []
        token_times = self.token_times
        for rid in ids:
            row = row_of_id[rid]
            timelines.append(RequestTimeline(
                request_id=rid, release=float(self.release[row]), token_times=np.array(token_times[row]),
                admissions=list(self.admissions[row]), preemptions=list(self.preemptions[row]), finish=self.finish[row],
                rejected=self.rejected.get(row),
            ))
        return Schedule(timelines=timelines, iterations=iterations, meta=meta)


class _LateColumns:
    """A bridge view's columns that only some policies read, taken from the book on first access
    (the `LazyView` builder protocol; valid during the decide() call the view was built for)."""

    __slots__ = ("book", "rows", "generated", "refine_rows")

    def __init__(self, book: RequestBook, rows: np.ndarray, generated: np.ndarray,
                 refine_rows: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> None:
        self.book, self.rows, self.generated, self.refine_rows = book, rows, generated, refine_rows

    def refined(self) -> np.ndarray:
        return self.refine_rows(self.book.pred, self.rows, self.generated)

    def qoe_columns(self) -> dict[str, np.ndarray]:
        return {"lag": self.book.lag[self.rows], "delay_area": self.book.delay_area[self.rows]}


@kernel
def _deliver_tokens(rows, counts, t, cls, arrival, ttft_target, read_rate, run_max, lag, delay_area, delivered):
    """`counts[k]` tokens delivered at time t to row `rows[k]` (-1: skipped): a latency request's
    reading lag is read_k - ideal_k = max(0, max_j(d_j - (j-1)/r) - ideal_1) (the closed form of
    qoe.py), and its delay area sums the lags. Compiled: as numpy expressions this cost ~20
    interpreter round trips per step, a sizeable part of the bridge's time."""
    for k in range(len(rows)):
        row = rows[k]
        if row < 0:
            continue
        for _ in range(counts[k]):
            if cls[row] == 0:
                run_max[row] = max(run_max[row], t - delivered[row] / read_rate[row])
                late = max(0.0, run_max[row] - (arrival[row] + ttft_target[row]))
                lag[row] = late
                delay_area[row] += late
            delivered[row] += 1
