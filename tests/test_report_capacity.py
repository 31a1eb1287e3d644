"""Capacity = highest rate with mean QoE >= threshold, linearly interpolated at the first crossing."""

import pytest

from experiments.report.capacity import capacity


def test_interpolates_between_the_bracketing_rates():
    # 0.99 at 2 req/s, 0.91 at 4 req/s: crosses 0.95 halfway -> 3 req/s
    cap = capacity([1, 2, 4, 8], [1.0, 0.99, 0.91, 0.3])
    assert cap.bound == "exact" and cap.rate == pytest.approx(3.0)


def test_unsorted_input_and_exact_hit():
    cap = capacity([4, 1, 2], [0.5, 1.0, 0.95])
    assert cap.bound == "exact" and cap.rate == pytest.approx(2.0 + (0.95 - 0.95) / 0.45 * 2)


def test_first_crossing_counts_not_a_noisy_recovery():
    cap = capacity([1, 2, 3, 4], [0.99, 0.90, 0.97, 0.2])
    assert cap.rate == pytest.approx(1 + 0.04 / 0.09)


def test_bounds_when_the_curve_never_crosses():
    assert capacity([1, 2], [0.99, 0.97]).label() == ">= 2"
    assert capacity([1, 2], [0.5, 0.2]).label() == "< 1"


def test_rejects_mismatched_input():
    with pytest.raises(ValueError, match="equal, non-empty"):
        capacity([1, 2], [0.9])
