"""Quality of Experience of a streamed response, exactly as docs/DESIGN.md defines it.

With ideal_i = arrival + TTFT_target + (i-1)/r and read_i = max(delivered_i, read_{i-1} + 1/r),
the lateness of token i has a closed form:

    read_i - ideal_i = max(0, max_{j<=i}(delivered_j - (j-1)/r) - ideal_1)

so the whole read-time recursion is one cumulative max (vectorized), and a stream's future only
depends on two numbers: its current lag (read_k - ideal_k of the last delivered token) and the
delay area so far. Engines keep those two per request; policies predict QoE from them.
"""

from __future__ import annotations

import numpy as np


def token_lateness(delivered: np.ndarray, arrival: float, ttft_target: float, read_rate: float) -> np.ndarray:
    """read_i - ideal_i for each delivered token (seconds, >= 0)."""
    steps = np.arange(len(delivered), dtype=np.float64) / read_rate
    ideal_1 = arrival + ttft_target
    return np.maximum(np.maximum.accumulate(np.asarray(delivered, dtype=np.float64) - steps) - ideal_1, 0.0)


def whole_area(n: int, read_rate: float) -> float:
    """S_whole = n(n+1)/(2r): the area under the ideal reading curve."""
    return n * (n + 1) / (2.0 * read_rate)


def qoe(delivered: np.ndarray, output_len: int, arrival: float, ttft_target: float, read_rate: float) -> float:
    """QoE in [0, 1]; 0 if fewer than `output_len` tokens were delivered (not completed)."""
    if len(delivered) < output_len or output_len == 0:
        return 0.0
    delay = float(token_lateness(delivered[:output_len], arrival, ttft_target, read_rate).sum())
    return max(0.0, 1.0 - delay / whole_area(output_len, read_rate))


def qoe_from_state(delay_area: np.ndarray, n: np.ndarray, read_rate: np.ndarray) -> np.ndarray:
    """QoE of streams whose total delay area is known (vectorized over requests)."""
    return np.maximum(0.0, 1.0 - delay_area / (n * (n + 1) / (2.0 * read_rate)))
