"""The decision events both engines share (engine_adapter/events.py)."""

from __future__ import annotations

import numpy as np

from engine_adapter.events import HeldPlan, is_steady_batch, prefill_event
from formulations.online import Plan


def test_prefill_event_is_a_first_token_or_a_recompute_left_with_its_last_token() -> None:
    was_prefill = np.array([True, True, True, False])
    generated = np.array([0, 0, 3, 5])
    # a prefill half done, a fresh prompt 1 token short, a decode: no event
    ended, resumed = prefill_event(was_prefill, np.array([10, 1, 7, 0]), generated)
    assert not ended and not resumed.any()
    ended, resumed = prefill_event(was_prefill, np.array([10, 0, 7, 0]), generated)
    assert ended and not resumed.any()
    ended, resumed = prefill_event(was_prefill, np.array([10, 1, 1, 0]), generated)
    assert ended and resumed.tolist() == [False, False, True, False]


def test_a_steady_batch_is_only_resident_decodes_without_eviction() -> None:
    assert is_steady_batch(False, False, True)
    assert not is_steady_batch(True, False, True)
    assert not is_steady_batch(False, True, True)
    assert not is_steady_batch(False, False, False)


def test_held_plan_is_due_at_an_event_or_its_recheck_time() -> None:
    held = HeldPlan()
    assert held.due(0.0)  # nothing decided yet
    held.decided(Plan(run=np.array([3, 1, 2]), preempt=np.array([0]), recheck_at=5.0))
    assert not held.due(4.9) and held.due(5.0)
    held.event = True
    assert held.due(0.0)
    # the run set's columns, in plan order, without requests that left (request 1); no preemption
    # re-applied
    assert held.run_columns(np.array([2, 3])).tolist() == [1, 0]
    assert held.run_columns(np.array([1, 2, 0, 3])).tolist() == [3, 0, 1]
