"""Closed-loop conversations: when a later turn is released (the one rule every engine applies).

A user reads turn k's answer and thinks before sending turn k+1, so turn k+1 is released
`think_time` seconds after turn k's last token: its release depends on the schedule, unlike an
arrival. Timed mode: release = finish + think_time. Slotted mode (slot_time = tau): time is whole
slots, so the think time is rounded up to whole slots (think_slots = ceil(think_time / tau), with
a 1e-9 tolerance so that a think time written as m * tau is m slots) and the turn is released at
the slot boundary think_slots slots after the one at which turn k finished; with think_time 0 it
may run in the very next iteration, as a DAG child does.
"""

from __future__ import annotations

import math

from formulations.requests import ValidationError

SLOT_TOLERANCE = 1e-9


def think_slots(think_time: float, slot_time: float) -> int:
    """Whole slots a think time lasts in slotted mode (rounded up)."""
    return max(0, math.ceil(think_time / slot_time - SLOT_TOLERANCE))


def turn_release(finish: float, think_time: float, slot_time: float | None) -> float:
    """When a turn whose previous turn finished at `finish` is released."""
    if slot_time is None:
        return finish + think_time
    finish_slot = round(finish / slot_time)
    return (finish_slot + think_slots(think_time, slot_time)) * slot_time


def is_closed_loop(requests) -> bool:
    """Whether any request is a later turn of a conversation (released by another's finish)."""
    return any(r.after is not None for r in requests)


def require_open_loop(requests, model: str,
                      reason: str = "needs release times fixed in advance, but a turn's release depends on the "
                                    "schedule") -> None:
    """A one-line error for what cannot run closed-loop turns (e.g. models whose release times
    are fixed before the schedule)."""
    turn = next((r for r in requests if r.after is not None), None)
    if turn is not None:
        raise ValidationError(f"request {turn.id!r}: after={turn.after!r} (a closed-loop turn); {model} {reason}")
