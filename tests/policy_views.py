"""Hand-built `EngineView`s for policy tests: one dict per live request, sensible defaults."""

from __future__ import annotations

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.latency_model import LatencyModel
from formulations.online import EngineView, GroupState

NAN = float("nan")
SLOTTED = EngineSpec(kv_blocks=64, latency=LatencyModel(0.01, 0.0, 0.0, 0.0), block_size=4, token_budget=64,
                     max_seqs=8, slot_time=0.1)


def make_view(rows: list[dict], engine: EngineSpec = SLOTTED, now: float = 0.0, free_blocks: int | None = None,
              groups: list[GroupState] | None = None, levels: tuple[float, ...] = (0.1, 0.5, 0.9)) -> EngineView:
    """Rows need `cls` (0/1/2) and `pred` (total output length, same at every quantile, or a tuple)."""
    n = len(rows)

    def col(name, default, dtype=np.float64):
        return np.array([r.get(name, default) for r in rows], dtype=dtype)

    prompt = col("prompt_len", 8, np.int64)
    generated = col("generated", 0, np.int64)
    resident = col("resident", False, bool)
    computed = np.where(resident, col("computed", 0, np.int64), 0)
    prefill_left = np.where(generated == 0, prompt - computed, np.where(resident, 0, prompt + generated - 1))
    kv = -(-computed // engine.block_size)
    preds = np.array([r["pred"] if isinstance(r["pred"], tuple) else (r["pred"],) * len(levels) for r in rows],
                     dtype=np.float64).reshape(n, len(levels))
    if free_blocks is None:
        free_blocks = engine.kv_blocks - int(kv.sum())
    cls = col("cls", 1, np.int8)
    return EngineView(
        now=now, idx=col("idx", 0, np.int64) if all("idx" in r for r in rows) else np.arange(n, dtype=np.int64),
        cls=cls, arrival=col("arrival", 0.0), release=col("release", 0.0) if any("release" in r for r in rows)
        else col("arrival", 0.0),
        prompt_len=prompt, generated=generated, computed=computed, prefill_left=prefill_left, resident=resident,
        kv_blocks=kv, ttft_target=np.where(cls == 0, col("ttft_target", 1.0), NAN),
        read_rate=np.where(cls == 0, col("read_rate", 5.0), NAN), lag=col("lag", 0.0),
        delay_area=col("delay_area", 0.0), deadline=np.where(cls == 0, NAN, col("deadline", NAN)),
        group=col("group", -1, np.int64), preemptions=col("preemptions", 0, np.int64), pred_quantiles=preds,
        quantile_levels=levels, free_blocks=free_blocks, engine=engine, groups=groups or [],
    )
