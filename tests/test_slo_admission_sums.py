"""slo's admission control finds each overflow on running sums it accumulates only as far as
it needs (`_AdmittedWork`); every overflow it finds must be the one a full np.cumsum of the
admitted work finds, bit for bit, whatever was given up before (single requests or groups)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.policies.slo import _AdmittedWork


def full_search(demand: np.ndarray, cap: np.ndarray, admitted: np.ndarray) -> int | None:
    over = admitted & (np.cumsum(demand * admitted) > cap)
    return int(np.argmax(over)) if over.any() else None


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 3000), give_ups=st.integers(1, 12))
def test_first_overflow_is_the_full_cumsum_one_after_any_give_ups(seed: int, n: int, give_ups: int) -> None:
    rng = np.random.default_rng(seed)
    demand = rng.exponential(rng.uniform(0.01, 1.0), n) * (rng.random(n) < 0.9)  # some zero work
    cap = np.sort(rng.uniform(0, rng.uniform(1, 3) * demand.sum() + 1e-9, n))  # time left grows with due order
    group = np.where(rng.random(n) < 0.2, rng.integers(0, 5, n), -1)
    sums, start = _AdmittedWork(demand, cap), 0
    for _ in range(give_ups):
        first = sums.first_overflow(start)
        assert first == full_search(demand, cap, sums.admitted)
        if first is None:
            break
        victim = int(rng.choice(np.flatnonzero(sums.admitted[: first + 1])))
        out = (group == group[victim]) & sums.admitted if group[victim] >= 0 else victim
        start = int(np.argmax(out)) if group[victim] >= 0 else victim
        sums.drop(out, start)
