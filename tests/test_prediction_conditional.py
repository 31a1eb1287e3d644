"""Conditioning a quantile grid on L >= generated + 1: hand values, monotonicity, Monte Carlo."""

from __future__ import annotations

import numpy as np

from solvers.prediction.conditional import cdf, condition_on_generated, quantile

LEVELS = np.array([0.25, 0.5, 0.75])
ROW = np.array([[100.0, 200.0, 300.0]])


def test_hand_computed_conditional_quantiles():
    # F(200) = 0.5; levels map to 0.5 + 0.5 p = 0.625, 0.75, 0.875.
    # 0.625 -> 250 (linear between 200 and 300); 0.75 -> 300; 0.875 is in the exponential tail
    # with scale 100 / ln(0.5 / 0.25): 300 + scale * ln(0.25 / 0.125) = 400.
    out = condition_on_generated(LEVELS, ROW, np.array([200]))
    np.testing.assert_allclose(out, [[250.0, 300.0, 400.0]])


def test_nothing_generated_leaves_prediction_unchanged():
    rng = np.random.default_rng(1)
    q = np.sort(rng.uniform(1, 1000, size=(50, 3)), axis=1)
    np.testing.assert_allclose(condition_on_generated(LEVELS, q, np.zeros(50)), np.maximum(q, 1.0))


def test_never_below_generated_plus_one_and_monotone():
    rng = np.random.default_rng(2)
    levels = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
    q = np.sort(rng.lognormal(5, 1, size=(200, len(levels))), axis=1)
    q[:10, 2:5] = q[:10, 2:3]  # ties in the grid
    previous = None
    for g in range(0, 3000, 37):
        out = condition_on_generated(levels, q, np.full(len(q), g))
        assert np.all(out >= g + 1)
        assert np.all(np.diff(out, axis=1) >= -1e-9)  # across levels
        if previous is not None:
            assert np.all(out >= previous - 1e-9)  # in generated
        previous = out


def test_cdf_and_quantile_are_inverse_including_tail():
    x = np.array([50.0, 150.0, 299.0, 450.0, 900.0])
    f = cdf(LEVELS, np.repeat(ROW, len(x), axis=0), x)
    back = quantile(LEVELS, np.repeat(ROW, len(x), axis=0), f[:, None])[:, 0]
    np.testing.assert_allclose(back, x, rtol=1e-9)


def test_matches_monte_carlo_conditioning():
    # Sample the distribution the grid describes (inverse CDF of uniforms), condition
    # empirically on L > g, and compare with the closed form.
    rng = np.random.default_rng(3)
    u = rng.uniform(size=400_000)
    samples = quantile(LEVELS, ROW, u[None, :])[0]
    for g in (50.0, 180.0, 320.0):
        kept = samples[samples > g]
        empirical = np.quantile(kept, LEVELS)
        exact = condition_on_generated(LEVELS, ROW, np.array([g]))[0]
        np.testing.assert_allclose(exact, np.maximum(empirical, g + 1), rtol=0.02)


def test_empty_input():
    assert condition_on_generated(LEVELS, np.empty((0, 3)), np.empty(0)).shape == (0, 3)
