"""Lines that arrive in any order, written in key order with bounded memory.

A streamed run scores each request when it finishes, but a schedule file lists the requests in
instance order. A line whose earlier lines are still missing waits in memory; when the waiting
lines pass `memory` bytes they move to a temporary file, read back when their turn comes (a
policy that holds one request back until the end would otherwise keep the whole file in memory).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO

import numpy as np


class OrderedLines:
    def __init__(self, out: IO, n: int, directory: Path | None = None, memory: int = 16 << 20) -> None:
        self._out = out
        self._n = n
        self._next = 0
        self._waiting: dict[int, str] = {}
        self._waiting_bytes = 0
        self._memory = memory
        self._spill: IO | None = None
        self._directory = directory
        self._offset = np.full(n, -1, dtype=np.int64)  # in the spill file; -1: not there
        self._length = np.zeros(n, dtype=np.int64)
        self._spilled = 0

    def put(self, key: int, line: str) -> None:
        if key != self._next:
            self._waiting[key] = line
            self._waiting_bytes += len(line)
            if self._waiting_bytes > self._memory:
                self._move_to_disk()
            return
        self._out.write(line)
        self._next += 1
        while self._next < self._n:
            if self._next in self._waiting:
                line = self._waiting.pop(self._next)
                self._waiting_bytes -= len(line)
            elif self._offset[self._next] >= 0:
                raw = os.pread(self._spill.fileno(), int(self._length[self._next]), int(self._offset[self._next]))
                line = raw.decode()
            else:
                break
            self._out.write(line)
            self._next += 1

    def close(self) -> None:
        """Every line must have been put."""
        if self._spill is not None:
            self._spill.close()
        if self._next != self._n:
            raise ValueError(f"line {self._next} of {self._n} never came")

    def _move_to_disk(self) -> None:
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(dir=self._directory)
        for key, line in self._waiting.items():
            raw = line.encode()
            self._offset[key], self._length[key] = self._spilled, len(raw)
            self._spill.write(raw)
            self._spilled += len(raw)
        self._spill.flush()
        self._waiting, self._waiting_bytes = {}, 0
