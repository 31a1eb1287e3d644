"""The offered-load estimate (engine seconds arriving per second) and its work model."""

import numpy as np
import pytest

from formulations.engine_spec import EngineSpec
from formulations.latency_model import LatencyModel
from solvers.policies import signals
from solvers.policies.offered_load import OfferedLoad
from policy_views import SLOTTED, make_view


def _work(view) -> np.ndarray:
    out = np.maximum(view.predicted_output(0.5), 1.0)
    prompt = view.prompt_len.astype(float)
    prefill_steps = np.ceil(prompt / view.engine.token_budget)  # budget-sized chunks
    return signals.engine_seconds(view.engine, prompt, out, prompt + out / 2.0, prefill_steps + out - 1.0)


def test_counts_each_request_once_and_forgets_it_after_the_window():
    load = OfferedLoad(window=20.0, min_span=5.0)
    first = make_view([dict(cls=1, pred=5.0, idx=0), dict(cls=1, pred=9.0, idx=1)], now=0.0)
    work = _work(first)
    assert load.update(first) == pytest.approx(work.sum() / 5.0)  # span 0 s: at least min_span
    later = make_view([dict(cls=1, pred=5.0, idx=0), dict(cls=1, pred=9.0, idx=1)], now=10.0)
    assert load.update(later) == pytest.approx(work.sum() / 10.0)  # not counted twice
    new = make_view([dict(cls=1, pred=5.0, idx=1), dict(cls=1, pred=7.0, idx=2)], now=30.0)
    assert load.update(new) == pytest.approx(_work(new)[1] / 20.0)  # 0 and 1 arrived > 20 s ago
    load.clear()
    assert load.update(first) == pytest.approx(work.sum() / 5.0)


def test_engine_seconds_of_a_batch_that_fills_the_cache_is_its_iterations():
    # k identical decoding requests whose contexts fill the KV cache exactly share every iteration:
    # their engine seconds add up to `steps` iterations of the latency model at batch k
    latency = LatencyModel(c0=0.006, c_prefill=2e-5, c_decode=1.6e-5, c_ctx=4e-8)
    k, context, steps = 8, 160.0, 50.0
    engine = EngineSpec(kv_blocks=int(k * context / 16), latency=latency, block_size=16, token_budget=4096, max_seqs=64)
    each = signals.engine_seconds(engine, np.zeros(k), np.full(k, steps), np.full(k, context), np.full(k, steps))
    assert each.sum() == pytest.approx(steps * latency.iteration_time(0.0, k, k * context))
    # slotted: max_seqs binds (8 per slot), so 8 requests of 5 steps take 5 slots
    slotted = signals.engine_seconds(SLOTTED, np.zeros(8), np.full(8, 5.0), np.full(8, 4.0), np.full(8, 5.0))
    assert slotted.sum() == pytest.approx(5 * SLOTTED.slot_time)


def _reference_load(events, window: float, min_span: float) -> list[float]:
    """The offered load's definition as plain Python: each request's work counted once, when first
    seen, for `window` seconds (the sums in the same order as OfferedLoad's)."""
    seen, arrivals, total, start, out = set(), [], 0.0, None, []
    for view in events:
        now = view.now
        start = now if start is None else start
        work = [w for i, w in zip(view.idx.tolist(), _work(view).tolist()) if i not in seen]
        seen.update(view.idx.tolist())
        if work:
            arrivals.append((now, work))
            total += sum(work)
        while arrivals and arrivals[0][0] <= now - window:
            for w in arrivals.pop(0)[1]:
                total -= w
        if not arrivals:
            total = 0.0
        out.append(total / max(min(window, now - start), min_span))
    return out


def test_long_runs_keep_every_arrival_until_it_leaves_the_window():
    # hundreds of arrivals over many windows: OfferedLoad's arrays are compacted and grown many times
    rng = np.random.default_rng(3)
    events, live, next_idx, now = [], [], 0, 0.0
    for _ in range(400):
        now += float(rng.exponential(0.7))
        for _ in range(int(rng.integers(0, 4))):
            live.append(dict(cls=1, pred=float(rng.integers(1, 300)), idx=next_idx,
                             prompt_len=int(rng.integers(1, 900))))
            next_idx += 1
        live = [r for r in live if rng.random() > 0.2]  # some finish
        events.append(make_view(live, now=now) if live else make_view([], now=now))
    load = OfferedLoad(window=20.0, min_span=5.0)
    assert [load.update(view) for view in events] == _reference_load(events, 20.0, 5.0)
