"""Trivial predictors: the global prior (`none`) and prompt-length buckets."""

from __future__ import annotations

import numpy as np
import pytest

from formulations.requests import Request, RequestClass, ValidationError
from solvers.prediction.baselines import BucketPredictor, PriorPredictor, length_bucket


def req(i: int, prompt_len: int) -> Request:
    return Request(id=f"r{i}", cls=RequestClass.LATENCY, arrival=0.0, prompt_len=prompt_len, output_len=5,
                   ttft_target=1.0, read_rate=5.0)


def test_prior_is_the_training_quantiles_for_everyone():
    y = np.arange(1, 101)
    p = PriorPredictor.fit(y, levels=(0.1, 0.5, 0.9))
    out = p.predict([req(0, 3), req(1, 3000)])
    np.testing.assert_allclose(out, [np.quantile(y, [0.1, 0.5, 0.9])] * 2)


def test_prior_refines_by_conditioning():
    p = PriorPredictor(values=(100, 200, 300), levels=(0.25, 0.5, 0.75))
    out = p.refine(p.predict([req(0, 1)]), np.array([200]))
    np.testing.assert_allclose(out, [[250.0, 300.0, 400.0]])


def test_prior_rejects_bad_values():
    with pytest.raises(ValidationError, match="values"):
        PriorPredictor(values=(5, 3, 9), levels=(0.1, 0.5, 0.9))
    with pytest.raises(ValidationError, match="quantile_levels"):
        PriorPredictor(values=(1, 2), levels=(0.5, 0.5))


def test_length_bucket_powers_of_two():
    np.testing.assert_array_equal(length_bucket(np.array([1, 2, 3, 4, 7, 8, 1000])), [0, 1, 1, 2, 2, 3, 9])


def test_bucket_quantiles_and_nearest_fallback():
    rng = np.random.default_rng(0)
    short_y, long_y = rng.integers(1, 50, 300), rng.integers(500, 900, 300)
    prompt = np.concatenate([np.full(300, 10), np.full(300, 300)])  # buckets 3 and 8
    y = np.concatenate([short_y, long_y])
    b = BucketPredictor.fit(prompt, y, levels=(0.5,), min_count=50)
    out = b.predict_lengths(np.array([9, 310, 2, 5000, 40]))[:, 0]
    # 2 -> nearest bucket 3 (short); 5000 -> bucket 8; 40 (bucket 5) is nearer 3 than 8
    np.testing.assert_allclose(out, [np.median(short_y), np.median(long_y), np.median(short_y),
                                     np.median(long_y), np.median(short_y)])


def test_bucket_needs_enough_examples():
    with pytest.raises(ValidationError, match="no bucket"):
        BucketPredictor.fit(np.array([1, 2, 3]), np.array([1, 2, 3]), min_count=50)


def test_default_refine_is_the_floor_generated_plus_one_elementwise():
    # the compiled rule (solvers/prediction/base.py::at_least_next) against numpy's expression of it
    from solvers.prediction.oracle import OraclePredictor

    rng = np.random.default_rng(5)
    q = np.sort(rng.uniform(1, 400, size=(300, 3)), axis=1)
    generated = rng.integers(0, 500, size=300)
    refined = OraclePredictor().refine(q, generated)
    np.testing.assert_array_equal(refined, np.maximum(q, (generated + 1)[:, None]))
    assert (refined[generated >= 400] == (generated[generated >= 400] + 1)[:, None]).all()


def test_refine_rows_is_refine_of_the_gathered_rows():
    # the bridge's path (LengthPredictor.refine_rows): the default rule gathers inside its kernel,
    # a predictor with a rule of its own gets the gathered rows
    from solvers.prediction.oracle import OraclePredictor

    rng = np.random.default_rng(6)
    table = np.sort(rng.uniform(1, 400, size=(300, 3)), axis=1)
    rows = rng.permutation(300)[:120]
    generated = rng.integers(0, 500, size=120)
    for predictor in (OraclePredictor(), PriorPredictor(values=(100, 200, 300), levels=(0.1, 0.5, 0.9))):
        np.testing.assert_array_equal(predictor.refine_rows(table, rows, generated),
                                      predictor.refine(table[rows], generated))
    assert OraclePredictor().refine_rows(table, rows[:0], generated[:0]).shape == (0, 3)
