"""Slotted-mode time arithmetic shared by the exact model, its decoder and the brute force.

Iteration k occupies [k*tau, (k+1)*tau); a request arriving at `a` may run in iteration k iff
k*tau >= a; a token produced in iteration k is delivered at (k+1)*tau. The comparisons are the
simulator's float comparisons, so a slot index means the same thing on both sides.
"""

from __future__ import annotations

import math

from formulations.instance import Instance
from formulations.requests import RequestClass, ValidationError
from formulations.arithmetic import ceil_div

DEADLINE_TOL = 1e-9  # formulations.metrics accepts completion <= deadline + 1e-9


def slot_time(instance) -> float:
    tau = instance.engine.slot_time
    if tau is None:
        raise ValidationError("engine: slot_time is None; the exact model needs slotted mode (set engine.slot_time)")
    return tau


def first_slot(t: float, tau: float) -> int:
    """Smallest k >= 0 with k * tau >= t."""
    k = max(0, math.ceil(t / tau))
    while k > 0 and (k - 1) * tau >= t:
        k -= 1
    while k * tau < t:
        k += 1
    return k


def last_slot_by(deadline: float, tau: float) -> int:
    """Largest k with (k + 1) * tau <= deadline (+ the scorer's tolerance); -1 if none."""
    k = math.floor((deadline + DEADLINE_TOL) / tau) - 1
    while (k + 2) * tau <= deadline + DEADLINE_TOL:
        k += 1
    while k >= 0 and (k + 1) * tau > deadline + DEADLINE_TOL:
        k -= 1
    return k


def min_slots(prompt_len: int, output_len: int, token_budget: int) -> int:
    """Fewest iterations a request needs: its prompt in full-budget chunks, then one per further token."""
    return ceil_div(prompt_len, token_budget) + output_len - 1


def time_scale(values: list[float]) -> int:
    """Ticks per second that make every value an integer (10^0 .. 10^6); 10^6 (rounding) otherwise."""
    for power in range(7):
        scale = 10**power
        if all(abs(v * scale - round(v * scale)) <= 1e-6 * max(1.0, abs(v * scale)) for v in values):
            return scale
    return 10**6


def instance_time_scale(instance: Instance, tau: float) -> int:
    """Ticks per second in which tau and every latency stream's 1/r and arrival+TTFT are integers."""
    values = [tau] + [v for r in instance.requests if r.cls is RequestClass.LATENCY
                      for v in (1.0 / r.read_rate, r.arrival + r.ttft_target)]
    return time_scale(values)
