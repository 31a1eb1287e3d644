"""`kernel`: how the policy rules and the greedy knapsack are compiled (numba), in one place.

A policy decides before every engine step, over a few dozen to a few thousand live requests; as
numpy expressions its rules cost one interpreter round trip per operation, which dominates at
small batches. Compiled, each rule is written once as a scalar function and run in one loop.
`error_model="numpy"` keeps numpy's floating-point semantics (x / 0 is inf or nan, not an
exception), so a compiled rule returns exactly what its numpy expression returned; `cache=True`
keeps the machine code on disk, so only the first process after an install compiles.
"""

from numba import njit

kernel = njit(cache=True, error_model="numpy")
