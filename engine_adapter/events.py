"""The events at which an engine asks its policy again (formulations/online.py, rule 4).

Both engines hold the plan's run set between events and share these definitions, so they ask
at the same iterations: the simulator (engine_adapter/simulator/engine.py) and the vLLM bridge
(engine_adapter/vllm_scheduler.py). An iteration is followed by a decision when in it
- a request arrived or was released (a DAG child, a later turn),
- a request completed,
- a prefill ended (`prefill_event`: its first token was delivered, or a recompute reached its
  last output token and goes on decoding),
- the engine's KV rule evicted a victim,
- or it ran nothing (idle);
and before any iteration at or after the plan's `recheck_at`. An iteration that would evict a
victim right after a steady iteration (`is_steady_batch`: the simulator fast-forwards those up to
the first one that no longer fits in KV) is preceded by a decision instead: KV exhaustion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine_adapter.plan_batch import columns_of
from formulations.online import Plan


def prefill_event(was_prefill: np.ndarray, left: np.ndarray, generated: np.ndarray) -> tuple[bool, np.ndarray]:
    """Per member of an iteration: whether it was prefilling, the prefill tokens it has left after
    the iteration and the tokens it had generated before. Returns whether a prefill ended, and the
    members that are recomputes left with their last output token only (they go on as decodes:
    vLLM's next step for them is that one-token step)."""
    resumed = was_prefill & (left == 1) & (generated > 0)
    return bool((was_prefill & ((left == 0) | resumed)).any()), resumed


def is_steady_batch(victims: bool, any_prefill: bool, all_resident: bool) -> bool:
    """Only decode steps of resident requests and no eviction: the batch repeats unchanged until
    the next event."""
    return not victims and not any_prefill and all_resident


@dataclass
class HeldPlan:
    """An engine's plan between events (the vLLM bridge's; the simulator's loop holds its own
    run slots): the last decided plan, whether an event happened since, and whether the last
    iteration was steady."""

    plan: Plan | None = None
    event: bool = True  # a fresh run asks first
    steady: bool = False

    def due(self, now: float) -> bool:
        """Whether the policy must be asked before the iteration starting at `now`."""
        plan = self.plan
        return self.event or plan is None or (plan.recheck_at is not None and now >= plan.recheck_at)

    def decided(self, plan: Plan) -> None:
        self.plan, self.event = plan, False

    def run_columns(self, live: np.ndarray) -> np.ndarray:
        """The columns of `live` (a view's request indices) holding the held plan's run set, in
        plan order, minus requests no longer live (its preemptions and rejections were applied
        when it was decided)."""
        # the batch rules' own compiled lookup (np.isin, or a sort and binary search, cost several
        # numpy calls, each 5-15 us after a model step)
        found = columns_of(live, np.asarray(self.plan.run, dtype=np.int64))[0]
        return found[found >= 0]
