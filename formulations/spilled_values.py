"""Float arrays keyed by request index, kept in a temporary file, and their exact statistics.

A million-request run has hundreds of millions of token gaps: too many to hold, yet the metrics
report their exact mean, median, p90 and p99 (the same floats as numpy on the whole array). So the
gaps go to disk as each request is scored, and the statistics are computed in bounded memory:
the mean by numpy's own pairwise summation tree (`np.add.reduce` on a contiguous float64 array
splits n into n2 = n/2 rounded down to a multiple of 8; leaves of LEAF values are summed by
numpy itself, so the sum is bit-identical), the percentiles from the exact order statistics
(found by four 16-bit radix passes over the file) combined as `np.percentile` combines them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from formulations.percentiles import PERCENTILES, Percentiles

FLUSH = 1 << 20  # values buffered before a write
CHUNK = 1 << 21  # values per read in a pass
LEAF = 1 << 21  # values summed by numpy at once (>= 128: numpy's own block size)
IN_MEMORY = 1 << 22  # at most this many values: read them all back and let numpy do it
SIGN = 1 << 63


class SpilledValues:
    """Arrays added under request indices 0..n-1 (each at most once), in any order."""

    def __init__(self, n: int, directory: Path | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)
        self._offset = np.zeros(n, dtype=np.int64)
        self._count = np.zeros(n, dtype=np.int64)
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._written = 0

    @property
    def total(self) -> int:
        return self._written + self._buffered

    def add(self, key: int, values: np.ndarray) -> None:
        self._offset[key] = self.total
        self._count[key] = len(values)
        self._buffer.append(np.ascontiguousarray(values, dtype=np.float64))
        self._buffered += len(values)
        if self._buffered >= FLUSH:
            self._flush()

    def close(self) -> None:
        self._file.close()

    def percentiles(self) -> Percentiles:
        """Exactly Percentiles.of(all values concatenated in key order)."""
        self._flush()
        n = self.total
        if n <= IN_MEMORY:
            return Percentiles.of(self.ordered(0, n))
        q = np.true_divide(np.asarray(PERCENTILES), 100)
        virtual = (n - 1) * q
        below = np.floor(virtual).astype(np.int64)
        above = np.minimum(below + 1, n - 1)
        stats = order_statistics(self._chunks, sorted(set(below.tolist()) | set(above.tolist())))
        p50, p90, p99 = (float(np.quantile(np.array([stats[a], stats[b]]), g))
                         for a, b, g in zip(below.tolist(), above.tolist(), (virtual - below).tolist(), strict=True))
        return Percentiles(float(self._pairwise_sum(0, n) / n), p50, p99, p90)

    def ordered(self, lo: int, hi: int) -> np.ndarray:
        """Values lo..hi-1 of the key-ordered concatenation."""
        self._flush()
        out = np.empty(hi - lo, dtype=np.float64)
        if hi <= lo:
            return out
        ends = self._ends()
        key = int(np.searchsorted(ends, lo, side="right"))
        pos = lo
        fd = self._file.fileno()
        while pos < hi:
            start = int(ends[key] - self._count[key])
            skip, take = pos - start, min(int(ends[key]), hi) - pos
            if take > 0:
                raw = os.pread(fd, 8 * take, 8 * int(self._offset[key] + skip))
                out[pos - lo:pos - lo + take] = np.frombuffer(raw, dtype=np.float64)
                pos += take
            key += 1
        return out

    def _ends(self) -> np.ndarray:
        return np.cumsum(self._count)

    def _flush(self) -> None:
        if self._buffer:
            self._file.write(np.concatenate(self._buffer).tobytes())
            self._file.flush()
            self._written += self._buffered
            self._buffer, self._buffered = [], 0

    def _chunks(self) -> Iterator[np.ndarray]:
        """Every value, in file order, CHUNK at a time."""
        fd = self._file.fileno()
        for lo in range(0, self._written, CHUNK):
            raw = os.pread(fd, 8 * min(CHUNK, self._written - lo), 8 * lo)
            yield np.frombuffer(raw, dtype=np.float64)

    def _pairwise_sum(self, lo: int, hi: int) -> float:
        if hi - lo <= LEAF:
            return np.add.reduce(self.ordered(lo, hi))
        half = (hi - lo) // 2
        half -= half % 8
        return self._pairwise_sum(lo, lo + half) + self._pairwise_sum(lo + half, hi)


def order_statistics(chunks, ranks: list[int]) -> dict[int, float]:
    """The rank-th smallest value (0-based) for each rank, over every value `chunks()` yields;
    four passes, each narrowing every rank's key by 16 bits (keys: float bits made to sort as
    unsigned integers)."""
    prefix = dict.fromkeys(ranks, 0)
    below = dict.fromkeys(ranks, 0)
    for level in range(4):
        shift = np.uint64(48 - 16 * level)
        counts = {r: np.zeros(1 << 16, dtype=np.int64) for r in ranks}
        for chunk in chunks():
            keys = _sortable(chunk)
            for r in ranks:
                picked = keys if level == 0 else keys[(keys >> np.uint64(shift + 16)) == prefix[r]]
                counts[r] += np.bincount(((picked >> shift) & 0xFFFF).astype(np.intp), minlength=1 << 16)
        for r in ranks:
            cumulative = np.cumsum(counts[r])
            bucket = int(np.searchsorted(cumulative, r - below[r], side="right"))
            below[r] += int(cumulative[bucket - 1]) if bucket else 0
            prefix[r] = (prefix[r] << 16) | bucket
    return {r: _unsortable(prefix[r]) for r in ranks}


def _sortable(values: np.ndarray) -> np.ndarray:
    bits = values.view(np.uint64)
    return np.where(bits >> np.uint64(63), ~bits, bits | np.uint64(SIGN))


def _unsortable(key: int) -> float:
    bits = key ^ SIGN if key & SIGN else ~key & (2**64 - 1)
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])
