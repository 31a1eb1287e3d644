"""State a policy keeps per request across decisions, indexed by the request's run-wide index.

Views carry `idx` (the request's position in the run), so a policy can keep flat arrays instead
of dicts; they grow as new requests show up.
"""

from __future__ import annotations

import numpy as np

from solvers.compiled import kernel


def grown(values: np.ndarray, size: int, fill: int | bool = 0) -> np.ndarray:
    """`values` extended with `fill` to at least `size` entries (itself if long enough).

    Doubling, so a run of n requests costs O(n) copying in all, not one copy per arrival.
    """
    if size <= len(values):
        return values
    out = np.full(max(size, 2 * len(values)), fill, dtype=values.dtype)
    out[: len(values)] = values
    return out


@kernel
def index_bound(idx):
    """One more than the largest request index in `idx` (0 if empty): the size per-request state
    needs. Compiled: ndarray.max() costs several microseconds of reduction set-up per call."""
    top = -1
    for i in idx:
        top = max(top, i)
    return top + 1
