"""`kernel`: how the policy rules and the greedy knapsack are compiled (numba), in one place.

A policy decides before every engine step, over a few dozen to a few thousand live requests; as
numpy expressions its rules cost one interpreter round trip per operation, which dominates at
small batches. Compiled, each rule is written once as a scalar function and run in one loop.
`error_model="numpy"` keeps numpy's floating-point semantics (x / 0 is inf or nan, not an
exception), so a compiled rule returns exactly what its numpy expression returned.

Plain functions of formulations/ that compiled rules share with the models (the ceiling
division) are taught to numba here (`overload`), so there is one implementation of each.

`cache=True` keeps the machine code on disk, so only the first process after an install
compiles. numba checks a cached kernel against its own file only, not against the rules it calls
from other files (slo_slack.py inlines signals.py's): an edited rule would leave its callers'
cached code stale. So the cache lives in a directory named after a hash of every source file a
kernel can reach (`solvers/`, `formulations/`): any edit starts a fresh cache, and the directory
of the previous sources is removed. It is `solvers/__pycache__/numba-<hash>`, or
`$NUMBA_CACHE_DIR/numba-<hash>` when that is set.
"""

import hashlib
import os
import shutil
from pathlib import Path

import numba
import numpy as np
from numba import njit
from numba.extending import overload

from formulations.arithmetic import ceil_div

_SOURCES = (Path(__file__).parent, Path(__file__).parent.parent / "formulations")


def _cache_dir() -> Path:
    digest = hashlib.sha256()
    for path in sorted(p for root in _SOURCES for p in root.rglob("*.py")):
        digest.update(path.relative_to(_SOURCES[1].parent).as_posix().encode())
        digest.update(path.read_bytes())
    base = Path(os.environ.get("NUMBA_CACHE_DIR") or Path(__file__).parent / "__pycache__")
    here = base / f"numba-{digest.hexdigest()[:16]}"
    if not here.exists():
        for stale in base.glob("numba-*"):
            shutil.rmtree(stale, ignore_errors=True)
    return here


numba.config.CACHE_DIR = str(_cache_dir())
kernel = njit(cache=True, error_model="numpy")


@overload(ceil_div)
def _ceil_div_in_kernels(a, b):
    """Kernels call formulations' ceiling division (and the rules that use it, such as
    formulations.online.blocks_to_admit) as they are: numba compiles its body for their types."""
    return ceil_div


PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE


@kernel
def numpy_sum(values):
    """`values.sum()` of a contiguous float64 vector, bit for bit: numpy's pairwise summation (8
    running sums over blocks of at most 128 values, longer runs split in halves rounded down to a
    multiple of 8, the halves' sums added), for kernels whose results were pinned with numpy's
    sums (a plain loop rounds differently). The tree is walked with an explicit stack: numba's
    cache cannot reload a recursive kernel (the process crashes)."""
    if len(values) <= PAIRWISE_BLOCK:
        return _block_sum(values, 0, len(values))
    # frames of the walk: a run (lo, n), how far it got (0: neither half, 1: its left half, 2: both)
    # and its left half's sum; the depth stays under 64 (n halves each level)
    lo, size, stage, left = np.empty(64, np.int64), np.empty(64, np.int64), np.empty(64, np.int64), np.empty(64)
    lo[0], size[0], stage[0], depth, total = 0, len(values), 0, 1, 0.0
    while depth:
        top = depth - 1
        n = size[top]
        half = n // 2 - (n // 2) % 8
        if n > PAIRWISE_BLOCK and stage[top] < 2:  # descend into the next half
            stage[top] += 1
            lo[depth] = lo[top] if stage[top] == 1 else lo[top] + half
            size[depth] = half if stage[top] == 1 else n - half
            stage[depth] = 0
            depth += 1
            continue
        total = _block_sum(values, lo[top], n) if n <= PAIRWISE_BLOCK else left[top] + total
        depth -= 1
        if depth and stage[depth - 1] == 1:  # a left half: kept until its right half is summed
            left[depth - 1] = total
    return total


@kernel
def _block_sum(values, lo, n):
    """numpy's sum of values[lo:lo + n] for n <= PAIRWISE_BLOCK (its leaf case)."""
    if n < 8:
        total = 0.0
        for i in range(lo, lo + n):
            total += values[i]
        return total
    r = values[lo:lo + 8].copy()
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] += values[lo + i + j]
        i += 8
    total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for k in range(i, n):
        total += values[lo + k]
    return total
