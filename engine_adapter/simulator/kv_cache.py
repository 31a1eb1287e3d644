"""KV block accounting: the free-block counter and block arithmetic for decode runs.

A request holding t tokens holds ceil(t / block_size) blocks. During a run of pure decode
iterations every member adds one token per iteration, so each member needs a new block exactly
once every `block_size` iterations, at a phase set by its current token count: the first
iteration where the batch needs more blocks than are free has a closed form (no per-iteration
loop), which is what lets the engine fast-forward.
"""

from __future__ import annotations

import numpy as np
from formulations.arithmetic import ceil_div


class KVCache:
    """Capacity and free blocks of the device KV cache (per-request holdings live in LiveState)."""

    def __init__(self, capacity: int, block_size: int) -> None:
        self.capacity = capacity
        self.block_size = block_size
        self.free = capacity

    def blocks_for(self, tokens: np.ndarray) -> np.ndarray:
        return ceil_div(tokens, self.block_size)

    def blocks_for_int(self, tokens: int) -> int:
        return ceil_div(tokens, self.block_size)


def first_shortage_step(held_tokens: np.ndarray, free: int, block_size: int) -> int:
    """First decode step j >= 1 at which the members cannot all grow, given `free` blocks.

    `held_tokens[i]` is member i's token count after step 0; step j brings it to
    held_tokens[i] + j. Member i needs a new block at steps o_i, o_i + B, o_i + 2B, ... with
    o_i in 1..B; after q full periods all m members took q blocks each, so the (free+1)-th new
    block is taken at step q*B + (the (r+1)-th smallest o_i), with q, r = divmod(free, m).
    """
    m = len(held_tokens)
    q, r = divmod(free, m)
    phase = (1 - held_tokens) % block_size
    phase[phase == 0] = block_size
    return q * block_size + int(np.partition(phase, r)[r])


def blocks_after_steps(held_tokens: np.ndarray, steps: np.ndarray, block_size: int) -> np.ndarray:
    """Total blocks the members hold after each step in `steps` (for the iteration log)."""
    tokens = held_tokens[None, :] + steps[:, None]
    return (ceil_div(tokens, block_size)).sum(axis=1)
