"""The token-time buffer, written in bulk.

Every iteration delivers one token to each request in a set, at the iteration's end; a
fast-forwarded run of k decode iterations delivers k consecutive tokens to each member, at the
same k end times. Scattering that into the request-indexed buffer at once costs several numpy
calls per run, more than the rest of a small run's bookkeeping. Nothing reads token times while
the simulation runs (the engine keeps lag and delay area separately), so runs are queued as
(buffer position of each member's first new token, end times) and scattered together,
vectorized, when enough tokens are pending (bounding the memory) and at the end.
"""

from __future__ import annotations

import numpy as np

FLUSH_TOKENS = 1 << 19  # pending tokens that trigger a scatter (a few MB of index arrays)


class TokenTimes:
    def __init__(self, total_tokens: int) -> None:
        self._buffer = np.empty(total_tokens, dtype=np.float64)
        self._first: list[np.ndarray] = []
        self._ends: list[np.ndarray] = []
        self._pending = 0

    def add(self, first: np.ndarray, ends: np.ndarray) -> None:
        """Member j's tokens first[j], first[j]+1, ... are delivered at ends[0], ends[1], ...

        `first` and `ends` must not be changed afterwards (they are kept until the scatter).
        """
        self._first.append(first)
        self._ends.append(ends)
        self._pending += len(first) * len(ends)
        if self._pending >= FLUSH_TOKENS:
            self._flush()

    def buffer(self) -> np.ndarray:
        """Every queued token time, written (token i of request r at token_offsets[r] + i)."""
        self._flush()
        return self._buffer

    def _flush(self) -> None:
        if not self._first:
            return
        members = np.array([len(f) for f in self._first], dtype=np.int64)
        run_len = np.array([len(e) for e in self._ends], dtype=np.int64)
        per_member = np.repeat(run_len, members)  # tokens of each member
        ends_at = np.repeat(np.cumsum(run_len) - run_len, members)  # offset of its run's end times
        member_start = np.cumsum(per_member) - per_member
        step = np.arange(int(per_member.sum())) - np.repeat(member_start, per_member)
        target = np.repeat(np.concatenate(self._first), per_member) + step
        self._buffer[target] = np.concatenate(self._ends)[np.repeat(ends_at, per_member) + step]
        self._first.clear()
        self._ends.clear()
        self._pending = 0
