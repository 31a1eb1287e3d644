"""Folding delivered tokens into each live latency request's lag and delay area, on demand.

The QoE state (formulations/qoe.py closed form) is only needed when a policy reads `view.lag`
or `view.delay_area` (fcfs, sjf and edf never do; scoring works from the token times), so the
engine does not update it per iteration: every delivered token's time is in the token-time
buffer anyway, and `fold` catches up the tokens delivered since the last fold of each request
(`LiveState.folded` counts the tokens already folded in).

Token j (0-based) of a request delivered at d_j is read late by
max(0, peak_j - ideal_1), where peak_j is the running max over i <= j of d_i - i/r; the delay
area sums that over tokens, the lag is the last token's value.
"""

from __future__ import annotations

import numpy as np

from engine_adapter.simulator.request_state import LiveState


def fold(state: LiveState) -> None:
    """Bring lag, delay_area and peak of every live latency request up to its `generated`."""
    n = state.n_live
    generated = state.generated[:n]
    folded = state.folded[:n]
    pending = np.flatnonzero(state.is_latency[:n] & (generated > folded))
    if len(pending) == 0:
        return
    first = folded[pending]
    count = generated[pending] - first
    inv_rate = state.inv_rate[pending]
    ideal1 = state.ideal1[pending]
    width = int(count.max())
    if width == 1:  # one new token each (a policy deciding every iteration): no running max to take
        peak = np.maximum(state.peak[pending], state.token_times[state.token_base[pending] + first] - first * inv_rate)
        late = np.maximum(peak - ideal1, 0.0)
        state.delay_area[pending] += late
        state.lag[pending] = late
        state.peak[pending] = peak
        state.folded[pending] = first + 1
        return
    total = int(count.sum())
    start = np.cumsum(count) - count  # each request's offset in the flat token arrays
    row = np.repeat(np.arange(len(pending)), count)
    col = np.arange(total) - start[row]  # position within the request's pending tokens
    token = first[row] + col  # 0-based token number
    shifted = state.token_times[state.token_base[pending][row] + token] - token * inv_rate[row]
    # running max per request: a (requests x longest pending) matrix padded with -inf
    run_max = np.full((len(pending), width), -np.inf)
    run_max[row, col] = shifted
    run_max[:, 0] = np.maximum(run_max[:, 0], state.peak[pending])
    np.maximum.accumulate(run_max, axis=1, out=run_max)
    late = np.maximum(run_max[row, col] - ideal1[row], 0.0)
    state.delay_area[pending] += np.add.reduceat(late, start)
    state.lag[pending] = late[start + count - 1]
    state.peak[pending] = run_max[np.arange(len(pending)), count - 1]
    state.folded[pending] = first + count
