"""Length predictors by name: the registry experiment configs, the CLI and the vLLM bridge resolve
names through (built-ins here, plugins via solvers.named)."""

from __future__ import annotations

from typing import Any

from solvers.prediction.base import LengthPredictor
from solvers.prediction.baselines import PriorPredictor
from solvers.prediction.learned import LearnedPredictor
from solvers.prediction.oracle import NoisyOraclePredictor, OraclePredictor
from solvers.named import Kind, available, build_named, resolve

PREDICTORS: dict[str, type[LengthPredictor]] = {
    "oracle": OraclePredictor,
    "noisy": NoisyOraclePredictor,
    "learned": LearnedPredictor,
    "none": PriorPredictor,
}


PREDICTOR_KIND = Kind("predictor", PREDICTORS, "slosched.predictors")


def predictor_class(name: str) -> type[LengthPredictor]:
    """The class of a built-in name, an installed plugin's name, or `package.module:Class`."""
    return resolve(PREDICTOR_KIND, name)


def predictor_names() -> list[str]:
    """Built-in and installed predictor names."""
    return available(PREDICTOR_KIND)


def make_predictor(name: str, **params: Any) -> LengthPredictor:
    """A predictor object; unknown names or parameters list what is valid."""
    return build_named(PREDICTOR_KIND, name, params)
