"""A fixed train/test split of ShareGPT by conversation, so the predictor never sees test prompts.

ShareGPT V3 cuts long conversations into pieces named `<base>_0`, `<base>_1`, ...; the split
hashes the base id, so all pieces of one conversation land on the same side. The split depends
only on the id (not on the order or the sample), so it is stable when the data grows.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from experiments.workloads.sharegpt.data import Pairs

SPLITS = ("train", "test", "all")
TEST_FRACTION = 0.2
_PIECE = re.compile(r"_\d+$")


def base_id(conversation_id: str) -> str:
    return _PIECE.sub("", conversation_id)


def is_test(conversation_ids: list[str], test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """Bool per id: whether its conversation belongs to the test side."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"split: test_fraction={test_fraction} must be in (0, 1)")
    u = np.array([int.from_bytes(hashlib.sha256(base_id(c).encode()).digest()[:8], "little") / 2**64
                  for c in conversation_ids])
    return u < test_fraction


def select(pairs: Pairs, split: str, test_fraction: float = TEST_FRACTION) -> Pairs:
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; valid: {', '.join(SPLITS)}")
    if split == "all":
        return pairs
    test = is_test(pairs.conversation, test_fraction)
    chosen = pairs.subset(np.flatnonzero(test if split == "test" else ~test))
    chosen.meta["split"] = split
    return chosen


def sample(pairs: Pairs, n: int | None, seed: int) -> Pairs:
    """A seeded random sample of n pairs (all of them if n is None or >= len)."""
    if n is None or n >= len(pairs):
        return pairs
    if n < 1:
        raise ValueError(f"sample: n={n} must be >= 1")
    index = np.sort(np.random.default_rng(seed).choice(len(pairs), size=n, replace=False))
    chosen = pairs.subset(index)
    chosen.meta["sample_seed"] = seed
    return chosen
