"""QoE (docs/DESIGN.md) on hand-computed cases, and the closed form against the read-time recursion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formulations.qoe import qoe, qoe_from_state, token_lateness, whole_area


def recursion_delay(delivered: list[float], arrival: float, ttft: float, rate: float) -> float:
    """S_delay straight from the definition: read_1 = max(d_1, ideal_1), read_i = max(d_i, read_{i-1} + 1/r)."""
    total = 0.0
    read = None
    for i, d in enumerate(delivered):
        ideal = arrival + ttft + i / rate
        read = max(d, ideal) if read is None else max(d, read + 1 / rate)
        total += read - ideal
    return total


def test_on_time_is_one() -> None:
    # ideal times 1.0, 1.5, 2.0 (ttft 1, rate 2): delivered exactly then
    assert qoe(np.array([1.0, 1.5, 2.0]), 3, 0.0, 1.0, 2.0) == 1.0


def test_early_tokens_are_buffered() -> None:
    # everything delivered at once before the first ideal time: the buffer paces reading
    assert qoe(np.array([0.1, 0.1, 0.1]), 3, 0.0, 1.0, 2.0) == 1.0


def test_uniform_delay() -> None:
    # each token 0.5 s late: S_delay = 3 * 0.5, S_whole = 3*4/(2*2) = 3 -> QoE = 0.5
    assert whole_area(3, 2.0) == 3.0
    assert qoe(np.array([1.5, 2.0, 2.5]), 3, 0.0, 1.0, 2.0) == pytest.approx(0.5)


def test_stall_propagates_to_later_reads() -> None:
    # first on time, second stalls until 3.0, third arrives early (2.1) but is read after the
    # second: read = 1.0, 3.0, 3.5 vs ideal 1.0, 1.5, 2.0 -> S_delay = 0 + 1.5 + 1.5 = 3
    delivered = np.array([1.0, 3.0, 3.0])
    np.testing.assert_allclose(token_lateness(delivered, 0.0, 1.0, 2.0), [0.0, 1.5, 1.5])
    assert qoe(delivered, 3, 0.0, 1.0, 2.0) == pytest.approx(0.0)
    assert qoe(np.array([1.0, 2.0, 2.1]), 3, 0.0, 1.0, 2.0) == pytest.approx(1 - (0.5 + 0.5) / 3)


def test_incomplete_scores_zero() -> None:
    assert qoe(np.array([1.0, 1.5]), 3, 0.0, 1.0, 2.0) == 0.0


def test_later_delivery_never_raises_qoe() -> None:
    base = np.array([1.0, 1.6, 2.4, 2.5])
    later = base.copy()
    later[-1] += 1.0
    assert qoe(later, 4, 0.0, 1.0, 2.0) < qoe(base, 4, 0.0, 1.0, 2.0)


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=30),
    arrival=st.floats(0.0, 5.0),
    ttft=st.floats(0.01, 3.0),
    rate=st.floats(0.5, 50.0),
)
def test_closed_form_matches_recursion(gaps: list[float], arrival: float, ttft: float, rate: float) -> None:
    delivered = arrival + np.cumsum(gaps)
    closed = float(token_lateness(delivered, arrival, ttft, rate).sum())
    assert closed == pytest.approx(recursion_delay(delivered.tolist(), arrival, ttft, rate), rel=1e-9, abs=1e-9)
    n = len(delivered)
    expected = max(0.0, 1 - closed / whole_area(n, rate))
    assert qoe(delivered, n, arrival, ttft, rate) == pytest.approx(expected)
    assert qoe_from_state(np.array([closed]), np.array([n]), np.array([rate]))[0] == pytest.approx(expected)
