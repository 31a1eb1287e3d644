"""The simulator's side of the plan rules: its live-slot columns handed to the one
implementation (engine_adapter/plan_rules.py), and what the engine asks of a batch."""

from __future__ import annotations

import numpy as np

from engine_adapter.events import is_steady_batch
from engine_adapter.plan_rules import Batch
from engine_adapter.plan_rules import form_batch as _form_batch
from engine_adapter.simulator.prefix_cache import PrefixCache
from engine_adapter.simulator.request_state import LiveState
from formulations.engine_spec import EngineSpec


def is_steady(batch: Batch, state: LiveState) -> bool:
    """Only decode steps of resident requests and no eviction: the same batch repeats until
    the next event, so the engine may fast-forward it."""
    # a non-resident request has prefill left, except a swapped-out decoding one
    return is_steady_batch(bool(batch.victims), batch.any_prefill,
                           np.count_nonzero(state.resident[batch.slots]) == len(batch.slots))


def form_batch(state: LiveState, run_slots: np.ndarray, free_blocks: int, spec: EngineSpec,
               exact_kv: bool, prefix: PrefixCache | None = None) -> Batch:
    """The batch that `run_slots` (a plan's run, as slots) yields now, without changing state.

    With prefix caching a waiting request is seen holding its hit (its tokens are computed
    already), so the exact KV check is needed.
    """
    n = state.n_live
    if prefix is None:
        return _form_batch(run_slots, n, state.resident, state.computed, state.prefill_left,
                           state.kv_blocks, state.admit_seq, free_blocks, spec, exact_kv)
    computed, prefill_left, held = prefix.plan_columns(n)
    return _form_batch(run_slots, n, state.resident[:n], computed, prefill_left, held, state.admit_seq[:n],
                       free_blocks, spec, True, lambda: prefix.freed(n))
