"""Train the learned predictor on ShareGPT and measure it against the trivial baselines.

Both steps use the fixed conversation-level split (split.py): training sees only the train side,
the accuracy report only the test side, and the `sharegpt` workload draws from the test side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.workloads.sharegpt.data import load_pairs
from experiments.workloads.sharegpt.split import sample, select
from solvers.prediction.accuracy import evaluate
from solvers.prediction.baselines import BucketPredictor, PriorPredictor
from solvers.prediction.learned import LEVELS, LengthModel, TrainConfig, load_model, save_model, train_length_model


def train(out: Path, config: TrainConfig, n: int | None, turns: str = "first") -> LengthModel:
    """Train on (a seeded sample of) the train split and save the artifact to `out`."""
    data = sample(select(load_pairs(turns), "train"), n, config.seed)
    model = train_length_model(data.prompt_text, data.prompt_len, data.output_len, config, data_meta=data.meta)
    save_model(model, out)
    return model


def accuracy_report(artifact: Path, n: int | None = None, seed: int = 0, turns: str = "first") -> dict:
    """Accuracy of the artifact and of the trivial predictors on the held-out test split.

    The baselines are fit on the same training rows the artifact was trained on (its metadata
    records the sample size and seed), so all three saw the same data.
    """
    model = load_model(artifact)
    cfg = model.meta["train_config"]
    n_train = model.meta["examples"]
    train_data = sample(select(load_pairs(turns), "train"), n_train, cfg["seed"])
    test = sample(select(load_pairs(turns), "test"), n, seed)
    truth = test.output_len
    prior = PriorPredictor.fit(train_data.output_len, LEVELS)
    bucket = BucketPredictor.fit(train_data.prompt_len, train_data.output_len, LEVELS)
    rows = {
        "learned": evaluate(LEVELS, model.predict_quantiles(test.prompt_text, test.prompt_len, LEVELS), truth),
        "bucket": evaluate(LEVELS, bucket.predict_lengths(test.prompt_len), truth),
        "global": evaluate(LEVELS, np.repeat(prior.values[None, :], len(test), axis=0), truth),
    }
    return {"artifact": str(artifact), "test_pairs": len(test), "train_pairs": len(train_data),
            "levels": list(LEVELS), "global_prior": [float(v) for v in prior.values],
            "train_meta": model.meta, "predictors": rows}
