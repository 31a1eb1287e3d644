"""Accuracy metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from solvers.prediction.accuracy import coverage, evaluate, pinball


def test_pinball_hand_values():
    truth = np.array([10.0, 20.0])
    q = np.array([[12.0, 12.0], [12.0, 12.0]])
    # level 0.1: y=10 under by 2 -> 0.9*2 = 1.8; y=20 over by 8 -> 0.1*8 = 0.8; mean 1.3
    # level 0.9: 0.1*2 = 0.2; 0.9*8 = 7.2; mean 3.7
    np.testing.assert_allclose(pinball([0.1, 0.9], q, truth), [1.3, 3.7])


def test_coverage_counts_truth_at_or_below():
    truth = np.array([1.0, 5.0, 10.0, 20.0])
    q = np.array([[5.0], [5.0], [5.0], [5.0]])
    np.testing.assert_allclose(coverage(q, truth), [0.5])


def test_evaluate_perfect_ranking_and_constant():
    truth = np.array([5.0, 1.0, 9.0, 3.0])
    perfect = evaluate([0.5], truth[:, None] * 2, truth)
    assert perfect["kendall_tau"] == pytest.approx(1.0)
    assert perfect["mae"] == pytest.approx(np.mean(truth))
    constant = evaluate([0.5], np.full((4, 1), 4.0), truth)
    assert constant["kendall_tau"] == 0.0
    assert constant["coverage"] == [0.5]


def test_evaluate_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        evaluate([0.1, 0.5], np.zeros((3, 1)), np.zeros(3))
