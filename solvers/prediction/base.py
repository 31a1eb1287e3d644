"""The predictor interface.

A predictor returns, per request at submission, quantiles of its *total* output length; as
tokens are generated the engine asks it to condition those on `output >= generated + 1` (the
request has not finished yet). Policies read the result in `EngineView.pred_quantiles`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from formulations.requests import Request
from solvers.compiled import kernel

DEFAULT_LEVELS = (0.1, 0.5, 0.9)


class LengthPredictor(ABC):
    name: str = "predictor"
    quantile_levels: tuple[float, ...] = DEFAULT_LEVELS

    @abstractmethod
    def predict(self, requests: Sequence[Request]) -> np.ndarray:
        """(n, Q) array of output-length quantiles, one row per request."""

    def refine(self, quantiles: np.ndarray, generated: np.ndarray) -> np.ndarray:
        """Condition on the request still running: no quantile below generated + 1.

        Row by row: row i of the result depends only on quantiles[i] and generated[i] (the
        simulator refines only the rows whose generated count changed since the last time).
        """
        return at_least_next(quantiles, np.arange(len(quantiles)), generated)

    def refine_rows(self, table: np.ndarray, rows: np.ndarray, generated: np.ndarray) -> np.ndarray:
        """`refine(table[rows], generated)`. The default rule gathers the rows in its own compiled
        pass: the vLLM bridge refines every live row of its book's table at each decision, after a
        model step has left the caches cold, where the gather's fresh array alone costs as much as
        the rule."""
        if type(self).refine is LengthPredictor.refine:
            return at_least_next(table, rows, generated)
        return self.refine(table[rows], generated)


@kernel
def at_least_next(table, rows, generated):
    """max(table[rows[i], j], generated[i] + 1): `refine`'s rule in one compiled pass (each numpy
    call costs several microseconds in the bridge, where a model step leaves the caches cold)."""
    out = np.empty((len(rows), table.shape[1]))
    for i in range(len(rows)):
        floor = generated[i] + 1.0
        for j in range(table.shape[1]):
            out[i, j] = max(table[rows[i], j], floor)
    return out
