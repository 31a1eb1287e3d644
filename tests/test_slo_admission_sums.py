"""slo's admission control (`_give_ups`) keeps its running sums across give-ups and redoes them
only from the first position a give-up changed; every give-up must be the one a plain
Moore-Hodgson over a full np.cumsum of the admitted work makes, bit for bit, whatever was given
up before (single requests or whole bulk groups, released or pending)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from formulations.engine_spec import EngineSpec
from solvers.policies import signals
from solvers.policies.slo import _give_ups

ENGINE = EngineSpec.from_profile("llama3-8b-h100")


def full_search(demand, due, group, sizes, now, max_rejections):
    """Moore-Hodgson written plainly: a full cumsum per give-up (items in the kernel's order)."""
    gwork = np.bincount(np.where(group >= 0, group, len(sizes)), weights=demand, minlength=len(sizes) + 1)
    score = np.where(group >= 0, gwork[np.maximum(group, 0)] / sizes[np.maximum(group, 0)], demand)
    order = np.argsort(due, kind="stable")
    demand, cap, score, group = demand[order], np.maximum(due[order] - now, 0.0) + 1e-9, score[order], group[order]
    admitted, out = np.ones(len(demand), dtype=bool), []
    for _ in range(max_rejections):
        over = admitted & (np.cumsum(demand * admitted) > cap)
        if not over.any():
            break
        window = np.flatnonzero(admitted[: int(np.argmax(over)) + 1])
        victim = int(window[np.argmax(score[window])])
        out.append(int(order[victim]))
        admitted[group == group[victim] if group[victim] >= 0 else victim] = False
    return out


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 3000), pending=st.integers(0, 6),
       max_rejections=st.integers(1, 12))
def test_give_ups_are_the_full_cumsum_ones(seed: int, n: int, pending: int, max_rejections: int) -> None:
    rng = np.random.default_rng(seed)
    generated = rng.integers(0, 300, n)
    hi = generated + rng.integers(1, 500, n).astype(np.float64)
    prompt = rng.integers(1, 2000, n)
    prefill = np.where(rng.random(n) < 0.5, prompt, 0)
    steps_hi = hi - generated + np.ceil(prefill / ENGINE.token_budget)
    eligible = rng.random(n) < 0.9
    now = 100.0
    due = now + rng.uniform(-1.0, rng.uniform(0.5, 30.0), n)  # some already past
    n_groups = 5
    group = np.concatenate([np.where(rng.random(n) < 0.2, rng.integers(0, n_groups, n), -1),
                            rng.integers(0, n_groups, pending)])
    sizes = rng.integers(1, 30, n_groups).astype(np.float64)
    tokens, duration = rng.integers(2, 500, pending).astype(np.float64), rng.uniform(0.05, 2.0, pending)
    pending_due = now + rng.uniform(0.0, 20.0, pending)
    t = 0.02
    slot = np.where(group >= 0, group, n_groups)
    positions, groups = _give_ups(signals.engine_costs(ENGINE), now, t, eligible, hi, generated, prompt, prefill,
                                  steps_hi, due, tokens, duration, pending_due, group, slot,
                                  np.append(sizes, 1.0), max_rejections)
    live = np.flatnonzero(eligible)
    decode = hi[live] - generated[live]
    demand = np.concatenate([
        signals.engine_seconds(ENGINE, prefill[live].astype(np.float64), decode,
                               prompt[live] + generated[live] + decode / 2.0, steps_hi[live]),
        signals.engine_seconds(ENGINE, tokens - 1.0, np.ones(pending), tokens, duration / t)])
    items = full_search(demand, np.concatenate([due[live], pending_due]),
                        np.concatenate([group[live], group[n:]]), sizes, now, max_rejections)
    expected_pos = [int(live[k]) if k < len(live) else -1 for k in items]
    expected_group = [int(group[live[k]]) if k < len(live) else int(group[n + k - len(live)]) for k in items]
    assert positions.tolist() == expected_pos
    assert groups.tolist() == expected_group
