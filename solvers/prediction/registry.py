"""Length predictors by name: the registry experiment configs and the CLI resolve names through."""

from __future__ import annotations

from typing import Any

from solvers.prediction.base import LengthPredictor
from solvers.prediction.baselines import PriorPredictor
from solvers.prediction.learned import LearnedPredictor
from solvers.prediction.oracle import NoisyOraclePredictor, OraclePredictor
from solvers.named import build_named

PREDICTORS: dict[str, type[LengthPredictor]] = {
    "oracle": OraclePredictor,
    "noisy": NoisyOraclePredictor,
    "learned": LearnedPredictor,
    "none": PriorPredictor,
}


def make_predictor(name: str, **params: Any) -> LengthPredictor:
    """A predictor object; unknown names or parameters list what is valid."""
    return build_named("predictor", PREDICTORS, name, params)
