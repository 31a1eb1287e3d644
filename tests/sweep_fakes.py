"""A tiny deterministic stand-in for an experiment cell, used by the sweep tests.

It lives in its own importable module so spawned worker processes and Ray workers can load it.
Every call appends the cell id to the file named by $SWEEP_CALL_LOG (one line per call), so
tests can count exactly which cells were computed; $SWEEP_FAIL_ID (comma-separated ids) makes those cells raise.
"""

from __future__ import annotations

import os
import time

import numpy as np


def make_cells(n: int, sleep: float = 0.0) -> list[dict]:
    return [{"id": f"c{i}", "policy": ["fcfs", "slo"][i % 2], "rate": 0.5 + 0.25 * (i // 2), "seed": 7 + i,
             "sleep": sleep} for i in range(n)]


def fake_cell(cell: dict) -> dict:
    log = os.environ.get("SWEEP_CALL_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(cell["id"] + "\n")
    if cell["id"] in os.environ.get("SWEEP_FAIL_ID", "").split(","):
        raise ValueError(f"injected failure in {cell['id']}")
    time.sleep(cell["sleep"])
    rng = np.random.default_rng(cell["seed"])
    samples = rng.exponential(1.0 / cell["rate"], size=50)
    return {"id": cell["id"], "mean": float(samples.mean()), "max": float(samples.max())}
