"""Fitting the latency model to measured step times."""

from __future__ import annotations

import numpy as np
import pytest

from engine_adapter.latency_fit import fit_latency, step_gap, with_step_gap


def synthetic_log(rng, n, c, noise=0.0):
    prefill = rng.integers(0, 512, n) * (rng.random(n) < 0.3)
    decodes = rng.integers(0, 32, n)
    ctx = decodes * rng.integers(50, 900, n)
    pairs = prefill * (prefill + 1) // 2
    t = c[0] + c[1] * prefill + c[2] * decodes + c[3] * ctx + c[4] * pairs
    return {"step_seconds": t * (1 + noise * rng.standard_normal(n)), "prefill_tokens": prefill,
            "decode_seqs": decodes, "decode_ctx_tokens": ctx, "prefill_pairs": pairs}


def test_recovers_exact_coefficients():
    c = (2e-3, 1.5e-5, 4e-5, 2e-8, 3e-10)
    fit = fit_latency(synthetic_log(np.random.default_rng(0), 300, c))
    got = fit.model
    np.testing.assert_allclose([got.c0, got.c_prefill, got.c_decode, got.c_ctx, got.c_prefill_ctx], c, rtol=1e-6)
    assert fit.r2 == pytest.approx(1.0) and fit.median_rel_error < 1e-9 and fit.steps == 300


def test_noisy_fit_is_close_and_never_negative():
    c = (2e-3, 1.5e-5, 0.0, 2e-8, 0.0)  # a true zero must not come out negative
    fit = fit_latency(synthetic_log(np.random.default_rng(1), 2000, c, noise=0.05))
    m = fit.model
    assert min(m.c0, m.c_prefill, m.c_decode, m.c_ctx, m.c_prefill_ctx) >= 0
    assert m.c0 == pytest.approx(2e-3, rel=0.1) and m.c_prefill == pytest.approx(1.5e-5, rel=0.1)
    assert 0.05 > fit.median_rel_error > 0.01


def test_too_few_steps():
    with pytest.raises(ValueError, match="at least"):
        fit_latency({k: np.ones(3) for k in ("step_seconds", "prefill_tokens", "decode_seqs", "decode_ctx_tokens",
                                             "prefill_pairs")})


def test_step_gap_is_the_median_time_between_steps_idle_waits_aside():
    log = synthetic_log(np.random.default_rng(2), 50, (2e-3, 1.5e-5, 4e-5, 2e-8, 0.0))
    gap = np.full(50, 2e-4)
    gap[[5, 17, 30]] = 0.5  # the engine idled for arrivals
    log["start"] = np.concatenate(([0.0], np.cumsum(log["step_seconds"] + gap)[:-1]))
    assert step_gap(log) == pytest.approx(2e-4)
    fit = fit_latency(log)
    assert with_step_gap(fit, log).model.c0 == pytest.approx(fit.model.c0 + 2e-4)
    assert with_step_gap(fit, log).model.c_prefill == fit.model.c_prefill
    assert step_gap({"start": np.array([1.0]), "step_seconds": np.array([0.1])}) == 0.0
