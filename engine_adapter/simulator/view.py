"""Building the `EngineView` a policy sees, at the cost of a few dictionary operations.

The columns are read-only slices of the live-slot arrays (no copies); the slices for each live
count are made once and reused. They alias the engine's state, so they are valid only during
that `decide()` call: a policy that keeps something across calls copies it.

EngineView is a frozen dataclass; its generated __init__ assigns its 24 fields one by one
through object.__setattr__, which costs more than the rest of a typical decision's bookkeeping,
so the instance dictionary is filled directly (the object is the same as the one __init__
would build; tests/test_simulator.py checks that).

`pred_quantiles` is computed only when a policy reads it (fcfs never does), and then only for
the requests whose `generated` changed since their last refinement: a learned predictor's
refine costs milliseconds for a thousand requests, and waiting requests do not change between
decisions. That relies on `LengthPredictor.refine` working row by row (each row's result
depends only on that row's quantiles and generated count), which is what it means.
"""

from __future__ import annotations

import numpy as np

from engine_adapter.simulator.request_state import LiveState
from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, GroupState
from solvers.prediction.base import LengthPredictor

_COLUMNS = ("idx", "cls", "arrival", "release", "prompt_len", "generated", "computed", "prefill_left",
            "resident", "kv_blocks", "ttft_target", "read_rate", "lag", "delay_area", "deadline", "group",
            "preemptions")


class _View(EngineView):
    """An EngineView whose `pred_quantiles` is filled in on first access (then a plain field)."""

    __slots__ = ("_refine",)  # outside __dict__, so vars(view) holds exactly the dataclass fields

    def __getattr__(self, name: str) -> object:
        if name != "pred_quantiles":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = self._refine()
        self.__dict__[name] = value
        return value


class ViewBuilder:
    def __init__(self, state: LiveState, engine: EngineSpec, predictor: LengthPredictor,
                 groups: list[GroupState]) -> None:
        self.state = state
        self.predictor = predictor
        self.fixed = {"quantile_levels": tuple(predictor.quantile_levels), "engine": engine, "groups": groups}
        self._slices: dict[int, dict[str, object]] = {}

    def _columns(self, n: int) -> dict[str, object]:
        cols = self._slices.get(n)
        if cols is None:
            cols = {}
            for name in _COLUMNS:
                col = getattr(self.state, name)[:n]
                col.flags.writeable = False
                cols[name] = col
            cols.update(self.fixed)
            self._slices[n] = cols
        return cols

    def build(self, now: float, free_blocks: int) -> EngineView:
        state = self.state
        n = state.n_live
        cols = self._columns(n)
        view = _View.__new__(_View)
        fields = view.__dict__
        fields.update(cols)
        fields["now"] = now
        fields["free_blocks"] = free_blocks
        object.__setattr__(view, "_refine", self._refined)
        return view

    def _refined(self) -> np.ndarray:
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
