"""slo's admission control (`_admission_items`, then `_moore_hodgson`) keeps its running sums
across give-ups and redoes them only from the first position a give-up changed; what it gives
up on must be what a plain Moore-Hodgson over a full np.cumsum of the admitted work gives up on,
bit for bit, whatever was given up before (single requests or whole bulk groups, released or
pending, some already given up on or doomed); the mask it returns marks exactly the live requests
given up on, alone or with their group."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from formulations.engine_spec import EngineSpec
from solvers.policies import signals
from solvers.policies.slo import _DEMAND, _DUE, _GROUP, _LIVE, _admission_items, _moore_hodgson

ENGINE = EngineSpec.from_profile("llama3-8b-h100")
N_GROUPS = 5


def full_search(demand, due, group, sizes, now, max_rejections):
    """Moore-Hodgson written plainly: a full cumsum per give-up; the items given up, in order."""
    gwork = np.bincount(np.where(group >= 0, group, N_GROUPS), weights=demand, minlength=N_GROUPS + 1)
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
    idx = rng.permutation(2 * n)[:n]
    cls = rng.choice([signals.LATENCY, signals.THROUGHPUT, signals.BULK], n).astype(np.int8)
    group = np.where(cls == signals.BULK, rng.integers(0, N_GROUPS, n), -1)
    generated = rng.integers(0, 300, n)
    hi = generated + rng.integers(1, 500, n).astype(np.float64)
    prompt = rng.integers(1, 2000, n)
    prefill = np.where(rng.random(n) < 0.5, prompt, 0)
    steps_hi = hi - generated + np.ceil(prefill / ENGINE.token_budget)
    now, t = 100.0, 0.02
    due = now + rng.uniform(-1.0, rng.uniform(0.5, 30.0), n)  # some already past
    release = np.where(rng.random(n) < 0.05, now + 1.0, now - 1.0)  # a few not runnable yet
    doomed = rng.random(n) < 0.05
    given_up = rng.random(2 * n) < 0.03
    given_up_group = rng.random(N_GROUPS) < 0.2
    sizes = rng.integers(1, 30, N_GROUPS).astype(np.float64)
    pend = np.stack([rng.integers(2, 500, pending).astype(np.float64), rng.uniform(0.05, 2.0, pending),
                     now + rng.uniform(0.0, 20.0, pending), rng.integers(0, N_GROUPS, pending).astype(np.float64)])
    before, before_group = given_up.copy(), given_up_group.copy()

    items = _admission_items(
        signals.engine_costs(ENGINE), now, t, doomed, given_up, given_up_group, sizes, idx, cls, group, release,
        hi, generated, prompt, prefill, steps_hi, due, pend)
    mask = _moore_hodgson(np.argsort(items[_DUE], kind="stable"), items, now, max_rejections, idx, group, given_up,
                          given_up_group)
    live = items[_LIVE][items[_LIVE] >= 0].astype(np.int64)
    demand, item_group = items[_DEMAND], items[_GROUP].astype(np.int64)

    out = doomed | before[idx] | ((group >= 0) & before_group[np.maximum(group, 0)]) | (release > now + 1e-12)
    expected_live = np.flatnonzero(~out)
    kept = np.flatnonzero(~before_group[pend[3].astype(np.int64)])
    decode = hi[expected_live] - generated[expected_live]
    expected_demand = np.concatenate([
        signals.engine_seconds(ENGINE, prefill[expected_live].astype(np.float64), decode,
                               prompt[expected_live] + generated[expected_live] + decode / 2.0, steps_hi[expected_live]),
        signals.engine_seconds(ENGINE, pend[0, kept] - 1.0, np.ones(len(kept)), pend[0, kept], pend[1, kept] / t)])
    expected_group = np.concatenate([group[expected_live], pend[3, kept].astype(np.int64)])
    assert live.tolist() == expected_live.tolist()
    assert np.array_equal(demand, expected_demand) and np.array_equal(item_group, expected_group)
    items = full_search(expected_demand, np.concatenate([due[expected_live], pend[2, kept]]), expected_group, sizes,
                        now, max_rejections)
    want, want_group = before.copy(), before_group.copy()
    for k in items:
        if expected_group[k] >= 0:
            want_group[expected_group[k]] = True
        else:
            want[idx[expected_live[k]]] = True
    assert given_up.tolist() == want.tolist() and given_up_group.tolist() == want_group.tolist()
    assert mask.tolist() == (want[idx] | ((group >= 0) & want_group[np.maximum(group, 0)])).tolist()
    assert items or not (given_up != before).any()
