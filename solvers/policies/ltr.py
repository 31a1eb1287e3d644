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
from solvers.policies import batching, signals
from solvers.policies.per_request import grown


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
        self._grow(int(idx.max()) + 1)
        mid = np.maximum(view.predicted_output(0.5), view.generated + 1.0)
        remaining = signals.steps_to_finish(view, mid)
        starved = self._starved[idx]
        quantum = self._quantum[idx]
        if starved.max() >= self.starvation_iterations:  # rare: skip the promotion bookkeeping otherwise
            newly = (starved >= self.starvation_iterations) & (quantum == 0)
            quantum[newly] = self.quantum_iterations
            self._quantum[idx[newly]] = self.quantum_iterations
        any_promoted = bool(quantum.any())  # quantum >= 0: any() is "any promoted"
        promoted = quantum > 0 if any_promoted else None
        keys = (view.arrival, remaining, ~promoted) if any_promoted else (view.arrival, remaining)  # else all equal
        if view.release.max() <= view.now + 1e-12:  # all runnable (one reduction, no mask)
            order = np.lexsort(keys)
        else:
            runnable = np.flatnonzero(view.release <= view.now + 1e-12)
            order = runnable[np.lexsort(tuple(key[runnable] for key in keys))]
        plan = batching.plan_in_order(view, order)
        served = batching.select(view, order)  # what the engine will run of that order
        self._starved[idx] = np.where(served, 0, starved + 1)
        if any_promoted:
            self._quantum[idx] = np.where(served & promoted, quantum - 1, quantum)
        return plan
