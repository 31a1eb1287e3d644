"""Building the `EngineView` a policy sees, at the cost of a few dictionary operations.

The columns are read-only slices of the live-slot arrays (no copies); the slices for each live
count are made once and reused. They alias the engine's state, so they are valid only during
that `decide()` call: a policy that keeps something across calls copies it.

EngineView is a frozen dataclass; its generated __init__ assigns its 24 fields one by one
through object.__setattr__, which costs more than the rest of a typical decision's bookkeeping,
so the instance dictionary is filled directly (the object is the same as the one __init__
would build; tests/test_simulator.py checks that).

`lag` and `delay_area` are brought up to date (stream_qoe.fold) only when a policy reads one of
them. `pred_quantiles` is computed only when a policy reads it (fcfs never does), and then only for
the requests whose `generated` changed since their last refinement: a learned predictor's
refine costs milliseconds for a thousand requests, and waiting requests do not change between
decisions. That relies on `LengthPredictor.refine` working row by row (each row's result
depends only on that row's quantiles and generated count), which is what it means.
"""

from __future__ import annotations

import numpy as np

from engine_adapter.simulator.request_state import LiveState
from engine_adapter.simulator.stream_qoe import fold
from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, GroupState
from solvers.prediction.base import LengthPredictor

_COLUMNS = ("idx", "cls", "arrival", "release", "prompt_len", "generated", "computed", "prefill_left",
            "resident", "kv_blocks", "ttft_target", "read_rate", "deadline", "group", "preemptions", "cached")
_QOE_COLUMNS = ("lag", "delay_area")  # filled in on first access


class LazyView(EngineView):
    """An EngineView whose `pred_quantiles`, `lag` and `delay_area` are filled in on first
    access (then plain fields), from its builder's `refined()` and `qoe_columns()` (the vLLM
    bridge builds its views this way too: engine_adapter/request_book.py)."""

    __slots__ = ("_builder",)  # outside __dict__, so vars(view) holds exactly the dataclass fields

    def __getattr__(self, name: str) -> object:  # called only for fields not in __dict__ yet
        if name == "pred_quantiles":
            value = self._builder.refined()
            self.__dict__[name] = value
            return value
        if name in _QOE_COLUMNS:
            self.__dict__.update(self._builder.qoe_columns())
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class ViewBuilder:
    def __init__(self, state: LiveState, engine: EngineSpec, predictor: LengthPredictor,
                 groups: list[GroupState]) -> None:
        self.state = state
        self.predictor = predictor
        self.fixed = {"quantile_levels": tuple(predictor.quantile_levels), "engine": engine, "groups": groups}
        self._slices: dict[int, dict[str, object]] = {}
        self._qoe_slices: dict[int, dict[str, np.ndarray]] = {}
        self._generation = state.generation

    def _read_only_slices(self, cache: dict, names: tuple[str, ...], n: int) -> dict:
        """Read-only views of the first n rows of state columns, cached per n (a slice of a given
        length stays valid until the state's columns move to a larger capacity)."""
        if self._generation != self.state.generation:
            self._slices.clear()
            self._qoe_slices.clear()
            self._generation = self.state.generation
        cols = cache.get(n)
        if cols is None:
            cols = {}
            for name in names:
                col = getattr(self.state, name)[:n]
                col.flags.writeable = False
                cols[name] = col
            cache[n] = cols
        return cols

    def _columns(self, n: int) -> dict[str, object]:
        cols = self._read_only_slices(self._slices, _COLUMNS, n)
        if "engine" not in cols:
            cols.update(self.fixed)
        return cols

    def qoe_columns(self) -> dict[str, np.ndarray]:
        """`lag` and `delay_area` of the live requests (read-only), folded up to date."""
        fold(self.state)
        return self._read_only_slices(self._qoe_slices, _QOE_COLUMNS, self.state.n_live)

    def build(self, now: float, free_blocks: int) -> EngineView:
        state = self.state
        n = state.n_live
        cols = self._columns(n)
        view = LazyView.__new__(LazyView)
        fields = view.__dict__
        fields.update(cols)
        fields["now"] = now
        fields["free_blocks"] = free_blocks
        object.__setattr__(view, "_builder", self)
        return view

    def refined(self) -> np.ndarray:
        """Refined quantiles of the live requests (read-only), refreshing only stale rows."""
        state = self.state
        n = state.n_live
        generated = state.generated[:n]
        stale = np.flatnonzero(state.refined_at[:n] != generated)
        if len(stale):
            g = generated[stale]
            state.pred_refined[stale] = self.predictor.refine(state.pred[stale], g)
            state.refined_at[stale] = g
        out = state.pred_refined[:n]
        out.flags.writeable = False
        return out
