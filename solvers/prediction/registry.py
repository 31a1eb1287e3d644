"""Length predictors by name (`predict` adds "learned" and "none")."""

from __future__ import annotations

import inspect
from typing import Any

from formulations.requests import ValidationError
from solvers.prediction.base import LengthPredictor
from solvers.prediction.baselines import PriorPredictor
from solvers.prediction.learned import LearnedPredictor
from solvers.prediction.oracle import NoisyOraclePredictor, OraclePredictor

PREDICTORS: dict[str, type[LengthPredictor]] = {
    "oracle": OraclePredictor,
    "noisy": NoisyOraclePredictor,
    "learned": LearnedPredictor,
    "none": PriorPredictor,
}


def make_predictor(name: str, **params: Any) -> LengthPredictor:
    """A predictor object; unknown names or parameters list what is valid."""
    cls = PREDICTORS.get(name)
    if cls is None:
        raise ValidationError(f"unknown predictor {name!r}; valid: {', '.join(sorted(PREDICTORS))}")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValidationError(f"predictor {name!r}: unknown parameter(s) {unknown}; valid: {accepted or 'none'}")
    try:
        return cls(**params)
    except TypeError as err:  # a required parameter is missing
        raise ValidationError(f"predictor {name!r}: {err}") from None
