"""Building the `EngineView` a policy sees, at the cost of a few dictionary operations.

The columns are read-only slices of the live-slot arrays (no copies); the slices for each live
count are made once and reused. They alias the engine's state, so they are valid only during
that `decide()` call: a policy that keeps something across calls copies it.

EngineView is a frozen dataclass; its generated __init__ assigns its 24 fields one by one
through object.__setattr__, which costs more than the rest of a typical decision's bookkeeping,
so the instance dictionary is filled directly (the object is the same as the one __init__
would build; tests/test_simulator.py checks that).
"""

from __future__ import annotations

from engine_adapter.simulator.request_state import LiveState
from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, GroupState
from solvers.prediction.base import LengthPredictor

_COLUMNS = ("idx", "cls", "arrival", "release", "prompt_len", "generated", "computed", "prefill_left",
            "resident", "kv_blocks", "ttft_target", "read_rate", "lag", "delay_area", "deadline", "group",
            "preemptions")


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
        view = EngineView.__new__(EngineView)
        fields = view.__dict__
        fields.update(cols)
        fields["now"] = now
        fields["free_blocks"] = free_blocks
        fields["pred_quantiles"] = self.predictor.refine(state.pred[:n], cols["generated"])
        return view
