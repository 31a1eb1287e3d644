"""Per-iteration records (simulate(..., record_iterations=True)), for tests and debugging.

A fast-forwarded decode run adds k rows at once; the per-row `scheduled` arrays of one run are
the same array object.
"""

from __future__ import annotations

import numpy as np

FIELDS = ("start", "end", "prefill_tokens", "decode_seqs", "seqs", "tokens", "kv_used_blocks")


class IterationLog:
    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {f: [] for f in FIELDS}
        self.scheduled: list[np.ndarray] = []

    def add(self, start: np.ndarray, end: np.ndarray, prefill_tokens: np.ndarray, decode_seqs: np.ndarray,
            kv_used_blocks: np.ndarray, scheduled: np.ndarray) -> None:
        """Rows for len(end) iterations that all ran the requests `scheduled`."""
        k = len(end)
        seqs = np.full(k, len(scheduled), dtype=np.int64)
        values = (start, end, prefill_tokens, decode_seqs, seqs, prefill_tokens + decode_seqs, kv_used_blocks)
        for name, value in zip(FIELDS, values, strict=True):
            self._parts[name].append(np.broadcast_to(np.asarray(value), (k,)))
        self.scheduled.extend([scheduled] * k)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            name: (np.concatenate(parts) if parts else np.empty(0)) for name, parts in self._parts.items()
        }
        out["scheduled"] = self.scheduled
        return out
