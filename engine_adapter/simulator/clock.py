"""Simulated time in the two timing modes.

Latency mode: an iteration lasts what the latency model says and an idle engine starts the next
one exactly at the next arrival. Slotted mode (EngineSpec.slot_time = tau): iteration k occupies
[k*tau, (k+1)*tau); time is kept as the integer slot index so that every boundary is the same
float k*tau wherever it is computed (a request arriving at a may run in slot k iff k*tau >= a).
"""

from __future__ import annotations

import math

import numpy as np


class Clock:
    def __init__(self, slot_time: float | None, start: float) -> None:
        self.slot_time = slot_time
        self.slot = 0
        self.now = 0.0 if slot_time is not None else start

    def jump_to(self, t: float) -> None:
        """Idle until `t` (> now): the first slot boundary >= t in slotted mode."""
        tau = self.slot_time
        if tau is None:
            self.now = t
            return
        k = max(self.slot, math.ceil(t / tau))
        while k * tau < t:
            k += 1
        while k - 1 > self.slot and (k - 1) * tau >= t:
            k -= 1
        self.slot = k
        self.now = k * tau

    def advance(self, duration: float) -> float:
        """One iteration of `duration` (ignored when slotted); returns its end time."""
        if self.slot_time is None:
            self.now += duration
        else:
            self.slot += 1
            self.now = self.slot * self.slot_time
        return self.now

    def run_ends(self, durations: np.ndarray | int) -> np.ndarray:
        """End times of consecutive iterations starting now (slotted: `durations` is a count)."""
        if self.slot_time is None:
            return np.cumsum(np.concatenate(([self.now], durations)))[1:]
        return (self.slot + 1 + np.arange(durations)) * self.slot_time

    def finish_run(self, ends: np.ndarray, k: int) -> None:
        """Commit the first k iterations of a run whose end times `run_ends` gave."""
        self.now = float(ends[k - 1])
        if self.slot_time is not None:
            self.slot += k
