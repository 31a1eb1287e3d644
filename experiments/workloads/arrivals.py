"""Synthetic arrival processes: Poisson, Gamma (bursty) and duty-cycle bursts.

All return n arrival times in seconds starting at 0 with mean rate `rate` req/s, so a synthetic
workload and a trace workload are rescaled the same way (`rate_scale` divides the times).
"""

from __future__ import annotations

import numpy as np


def _from_gaps(gaps: np.ndarray) -> np.ndarray:
    """Arrival times 0, g0, g0+g1, ... for n requests given n-1 gaps."""
    return np.concatenate(([0.0], np.cumsum(gaps)))


def poisson_arrivals(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    return _from_gaps(rng.exponential(1.0 / rate, size=max(n - 1, 0)))


def gamma_arrivals(rng: np.random.Generator, n: int, rate: float, cv: float) -> np.ndarray:
    """Gamma inter-arrival times with mean 1/rate and coefficient of variation `cv`.

    shape k = 1/cv^2, scale = 1/(rate k): cv = 1 is Poisson, cv > 1 clusters requests into
    bursts separated by long gaps (the burstiness knob of AlpaServe/DistServe-style studies).
    """
    shape = 1.0 / cv**2
    return _from_gaps(rng.gamma(shape, 1.0 / (rate * shape), size=max(n - 1, 0)))


def burst_arrivals(rng: np.random.Generator, n: int, rate: float, on: float, off: float) -> np.ndarray:
    """Poisson arrivals only during the first `on` seconds of every `on + off` second cycle.

    The rate while on is rate * (on + off) / on, so the long-run mean rate is `rate`. Drawn as a
    Poisson process on the "on" clock, then mapped to wall time by inserting the off periods.
    """
    on_rate = rate * (on + off) / on
    on_clock = poisson_arrivals(rng, n, on_rate)
    cycles = np.floor(on_clock / on)
    return cycles * (on + off) + (on_clock - cycles * on)
