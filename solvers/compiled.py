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
