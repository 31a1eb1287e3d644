"""`ltr`: shortest predicted job first with a starvation bound, after learning-to-rank scheduling
(Fu et al., "Efficient LLM Scheduling by Learning to Rank", NeurIPS 2024).

Taken from the paper: requests are ordered by a predicted *rank* of their output length (only
the order matters, not calibrated lengths), shortest first, re-ranked at every scheduling step;
starvation prevention: a request that has not been served for `starvation_iterations`
consecutive scheduling steps is promoted ahead of all others for a quantum of
`quantum_iterations` served steps, then returns to its rank.

What differs: the rank comes from the predictor's median of the *remaining* length (prefill
iterations included), not from a ranking model trained with a listwise loss; the starvation
counter is measured in decisions (one per engine step) on our simulator.
"""

from __future__ import annotations

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import EMPTY, EngineView, Plan, Policy
from solvers.compiled import kernel
from solvers.policies import batching, signals
from solvers.policies.per_request import grown, index_bound


@kernel
def _remaining(mid: np.ndarray, generated: np.ndarray, prefill: np.ndarray, budget: int) -> np.ndarray:
    """Iterations each request needs to finish at its predicted median length (at least
    generated + 1; `prefill`: tokens left after prefix-cache hits), in one pass."""
    out = np.empty(len(mid))
    for i in range(len(mid)):
        pre = signals.prefill_iterations_at(prefill[i], budget)
        out[i] = signals.steps_to_finish_at(np.maximum(mid[i], generated[i] + 1.0), generated[i], pre)
    return out


@kernel
def _promote(starved: np.ndarray, quantum: np.ndarray, idx: np.ndarray, starvation: int, steps: int) -> bool:
    """Give a quantum of `steps` to each live request starved for `starvation` decisions that has
    none left; whether any live request holds a quantum."""
    promoted = False
    for i in idx:
        if starved[i] >= starvation and quantum[i] == 0:
            quantum[i] = steps
        promoted = promoted or quantum[i] > 0
    return promoted


@kernel
def _account(starved: np.ndarray, quantum: np.ndarray, idx: np.ndarray, served: np.ndarray) -> None:
    """After a decision: a served request's starvation count restarts and its quantum (if any)
    shrinks by one step; every other live request has starved one decision more."""
    for j in range(len(idx)):
        i = idx[j]
        if served[j]:
            starved[i] = 0
            quantum[i] = max(quantum[i] - 1, 0)
        else:
            starved[i] += 1


class LtrPolicy(Policy):
    name = "ltr"

    def __init__(self, starvation_iterations: int = 100, quantum_iterations: int = 50) -> None:
        if starvation_iterations < 1 or quantum_iterations < 1:
            raise ValueError(
                f"ltr: starvation_iterations={starvation_iterations}, quantum_iterations={quantum_iterations} must be >= 1"
            )
        self.starvation_iterations = starvation_iterations
        self.quantum_iterations = quantum_iterations
        self._starved = np.zeros(0, dtype=np.int64)  # per request index: decisions without service
        self._quantum = np.zeros(0, dtype=np.int64)  # per request index: promoted steps left

    def reset(self, engine: EngineSpec) -> None:
        self._starved = np.zeros(0, dtype=np.int64)
        self._quantum = np.zeros(0, dtype=np.int64)

    def _grow(self, size: int) -> None:
        self._starved = grown(self._starved, size)
        self._quantum = grown(self._quantum, size)

    def decide(self, view: EngineView) -> Plan:
        if len(view) == 0:
            return Plan(run=EMPTY)
        idx = view.idx
        self._grow(index_bound(idx))
        remaining = _remaining(view.predicted_output(0.5), view.generated, view.prefill_after_hits(),
                               view.engine.token_budget)
        if _promote(self._starved, self._quantum, idx, self.starvation_iterations, self.quantum_iterations):
            keys = (view.arrival, remaining, self._quantum[idx] == 0)  # promoted ones first
        else:
            keys = (view.arrival, remaining)
        if view.release.max() <= view.now + 1e-12:  # all runnable (one reduction, no mask)
            order = np.lexsort(keys)
        else:
            runnable = np.flatnonzero(view.release <= view.now + 1e-12)
            order = runnable[np.lexsort(tuple(key[runnable] for key in keys))]
        _account(self._starved, self._quantum, idx, batching.select(view, order))  # what the engine will run
        return batching.plan_in_order(view, order)
