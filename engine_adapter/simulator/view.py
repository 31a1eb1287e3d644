"""Building the `EngineView` a policy sees: slices of the live-slot columns, no copies.

The arrays of a view alias the engine's state and are valid only during that `decide()` call;
a policy that keeps something across calls copies it (the baselines keep their own arrays).
"""

from __future__ import annotations

from engine_adapter.simulator.request_state import LiveState
from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, GroupState
from solvers.prediction.base import LengthPredictor


def build_view(state: LiveState, now: float, free_blocks: int, engine: EngineSpec,
               predictor: LengthPredictor, groups: list[GroupState]) -> EngineView:
    n = state.n_live
    generated = state.generated[:n]
    return EngineView(
        now=now,
        idx=state.idx[:n],
        cls=state.cls[:n],
        arrival=state.arrival[:n],
        release=state.release[:n],
        prompt_len=state.prompt_len[:n],
        generated=generated,
        computed=state.computed[:n],
        prefill_left=state.prefill_left[:n],
        resident=state.resident[:n],
        kv_blocks=state.kv_blocks[:n],
        ttft_target=state.ttft_target[:n],
        read_rate=state.read_rate[:n],
        lag=state.lag[:n],
        delay_area=state.delay_area[:n],
        deadline=state.deadline[:n],
        group=state.group[:n],
        preemptions=state.preemptions[:n],
        pred_quantiles=predictor.refine(state.pred[:n], generated),
        quantile_levels=predictor.quantile_levels,
        free_blocks=free_blocks,
        engine=engine,
        groups=groups,
    )
