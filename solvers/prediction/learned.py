"""Learned output-length predictor: quantile regression forest on prompt features.

Why a quantile forest: one model gives every quantile level at once, from the empirical
distribution of training lengths in the leaves a prompt falls into, so the quantiles never cross
and the predicted grid is a real distribution that online refinement can condition (see
conditional.py). The forest is fit on log(1 + length) (skewed target, better splits); quantiles
map back exactly since the transform is monotone.

The trained model is a versioned artifact (joblib): format name + version, feature config,
quantile levels, the training prior, and training metadata (data, sample, seed, library
versions, seconds). Loading checks format and version and is memoized per file.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from formulations.requests import Request, ValidationError
from solvers.prediction.base import LengthPredictor
from solvers.prediction.conditional import condition_on_generated
from solvers.prediction.features import FeatureConfig, PromptFeaturizer

ARTIFACT_FORMAT = "slosched-length-predictor"
ARTIFACT_VERSION = 1
LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def cache_dir() -> Path:
    """Where slosched keeps derived data and trained artifacts ($SLOSCHED_CACHE, ~/.cache/slosched)."""
    return Path(os.environ.get("SLOSCHED_CACHE", Path.home() / ".cache" / "slosched")).expanduser()


def default_artifact() -> Path:
    """The artifact `slosched predictor train` writes and `learned` reads unless told otherwise."""
    return cache_dir() / "predictors" / f"learned-sharegpt-v{ARTIFACT_VERSION}.joblib"


def check_levels(levels: Sequence[float], owner: str) -> tuple[float, ...]:
    arr = np.asarray(levels, dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0 or np.any(arr <= 0) or np.any(arr >= 1) or np.any(np.diff(arr) <= 0):
        raise ValidationError(f"{owner}: quantile_levels={tuple(levels)!r} must be strictly increasing in (0, 1)")
    return tuple(float(x) for x in arr)


@dataclass(frozen=True)
class TrainConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    n_estimators: int = 100
    min_samples_leaf: int = 10
    max_features: float = 0.5
    max_samples_leaf: int = 16  # training lengths kept per leaf (seeded subsample): bounds the artifact size
    seed: int = 0
    n_jobs: int = 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LengthModel:
    """A fitted featurizer + forest, with the metadata that travels in the artifact."""

    featurizer: PromptFeaturizer
    forest: Any  # quantile_forest.RandomForestQuantileRegressor fitted on log1p(length)
    prior_levels: tuple[float, ...]
    prior_values: tuple[float, ...]  # training output-length quantiles at prior_levels
    meta: dict[str, Any]

    def predict_quantiles(self, texts: Sequence[str], prompt_len: np.ndarray,
                          levels: Sequence[float] = LEVELS) -> np.ndarray:
        if len(texts) == 0:
            return np.empty((0, len(levels)))
        x = self.featurizer.transform(texts, np.asarray(prompt_len))
        q = self.forest.predict(x, quantiles=list(levels))
        q = np.asarray(q, dtype=np.float64).reshape(len(texts), len(levels))
        return np.maximum(np.maximum.accumulate(np.expm1(q), axis=1), 1.0)


def train_length_model(texts: Sequence[str], prompt_len: np.ndarray, output_len: np.ndarray,
                       config: TrainConfig = TrainConfig(), data_meta: dict[str, Any] | None = None) -> LengthModel:
    """Fit the featurizer and the quantile forest (deterministic for a given config.seed)."""
    from quantile_forest import RandomForestQuantileRegressor

    prompt_len = np.asarray(prompt_len, dtype=np.int64)
    output_len = np.asarray(output_len, dtype=np.int64)
    if not (len(texts) == len(prompt_len) == len(output_len)):
        raise ValidationError(f"train: texts/prompt_len/output_len lengths differ: "
                              f"{len(texts)}, {len(prompt_len)}, {len(output_len)}")
    if len(texts) < 2 * config.min_samples_leaf:
        raise ValidationError(f"train: {len(texts)} examples, need at least {2 * config.min_samples_leaf}")
    if np.any(output_len < 1):
        raise ValidationError(f"train: output_len must be >= 1, got min {output_len.min()}")
    start = time.perf_counter()
    featurizer = PromptFeaturizer(config.features, config.seed)
    x = featurizer.fit_transform(texts, prompt_len)
    forest = RandomForestQuantileRegressor(
        n_estimators=config.n_estimators, min_samples_leaf=config.min_samples_leaf,
        max_features=config.max_features, max_samples_leaf=config.max_samples_leaf, random_state=config.seed, n_jobs=config.n_jobs,
    )
    forest.fit(x, np.log1p(output_len.astype(np.float64)))
    seconds = time.perf_counter() - start
    import quantile_forest
    import sklearn

    meta = {
        "train_config": config.to_dict(),
        "examples": int(len(texts)),
        "train_seconds": round(seconds, 2),
        "versions": {"sklearn": sklearn.__version__, "quantile_forest": quantile_forest.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "data": dict(data_meta or {}),
    }
    values = tuple(float(v) for v in np.quantile(output_len, LEVELS))
    return LengthModel(featurizer, forest, LEVELS, values, meta)


def save_model(model: LengthModel, path: str | Path) -> None:
    import joblib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": ARTIFACT_FORMAT, "version": ARTIFACT_VERSION,
               "feature_config": model.featurizer.config.to_dict(), "prior_levels": model.prior_levels,
               "prior_values": model.prior_values, "meta": model.meta,
               "featurizer": model.featurizer, "forest": model.forest}
    tmp = path.with_name(path.name + ".tmp")
    joblib.dump(payload, tmp)
    tmp.replace(path)


def load_model(path: str | Path) -> LengthModel:
    """Load an artifact (memoized by path and modification time)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ValidationError(f"learned predictor: artifact={str(path)!r} does not exist "
                              f"(train one with: slosched predictor train --out {path})")
    return _load(str(path.resolve()), path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _load(path: str, _mtime: int) -> LengthModel:
    import joblib

    payload = joblib.load(path)
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise ValidationError(f"learned predictor: {path} is not a {ARTIFACT_FORMAT} artifact")
    if payload.get("version") != ARTIFACT_VERSION:
        raise ValidationError(f"learned predictor: {path} has artifact version {payload.get('version')!r}, "
                              f"this code reads version {ARTIFACT_VERSION}: retrain it")
    return LengthModel(payload["featurizer"], payload["forest"], tuple(payload["prior_levels"]),
                       tuple(payload["prior_values"]), payload["meta"])


class LearnedPredictor(LengthPredictor):
    """Quantiles of the output length from the prompt text and length; refined online."""

    name = "learned"

    def __init__(self, artifact: str | Path | LengthModel | None = None, quantile_levels: Sequence[float] = LEVELS) -> None:
        if artifact is None:
            artifact = default_artifact()
        self.model = artifact if isinstance(artifact, LengthModel) else load_model(artifact)
        self.quantile_levels = check_levels(quantile_levels, "learned predictor")

    def predict(self, requests: Sequence[Request]) -> np.ndarray:
        missing = [r.id for r in requests if r.prompt_text is None]
        if missing:
            raise ValidationError(f"learned predictor: request(s) {missing[:5]} have no prompt_text "
                                  f"({len(missing)} in all); use a workload with prompts (e.g. sharegpt)")
        texts = [r.prompt_text for r in requests]
        prompt_len = np.array([r.prompt_len for r in requests], dtype=np.int64)
        return self.model.predict_quantiles(texts, prompt_len, self.quantile_levels)

    def refine(self, quantiles: np.ndarray, generated: np.ndarray) -> np.ndarray:
        return condition_on_generated(self.quantile_levels, quantiles, generated)
