"""Block keys from request content ids: what vLLM's chained block hash is, for the simulator.

vLLM keys a full block by hash(parent block's hash, the block's token ids). A request here
describes its tokens by `content_ids`, one per `content_block` tokens (prompt then output); an
engine block of `block_size` tokens is keyed by its parent's key and the ids of the content
blocks it overlaps (its position is the chain's depth, so the ids fix its tokens). Keys are
interned into ints, so equal keys mean equal content exactly (no hash collisions). Blocks not
covered by ids are the request's own: each gets a fresh key nobody else has.
"""

from __future__ import annotations

import itertools

from formulations.requests import Request


class ContentKeys:
    """Keys of every request's full blocks, computed once per request on first use."""

    def __init__(self, requests: tuple[Request, ...], block_size: int) -> None:
        self.requests = requests
        self.block_size = block_size
        self._chain: dict[tuple[int, tuple[int, ...]], int] = {}
        self._own = itertools.count(-1, -1)  # keys of uncovered blocks: negative, never shared
        self._keys: dict[int, list[int]] = {}

    def of(self, index: int) -> list[int]:
        keys = self._keys.get(index)
        if keys is None:
            keys = self._keys[index] = self._compute(self.requests[index])
        return keys

    def _compute(self, req: Request) -> list[int]:
        bs = self.block_size
        total = req.prompt_len + req.output_len
        ids = req.content_ids or ()
        per_id = req.content_block or 1
        covered = min(len(ids) * per_id, total)
        chain = self._chain
        keys: list[int] = []
        prev = 0
        j = 0
        while (j + 1) * bs <= covered:
            label = (prev, tuple(ids[(j * bs) // per_id: ((j + 1) * bs - 1) // per_id + 1]))
            prev = chain.setdefault(label, len(chain) + 1)
            keys.append(prev)
            j += 1
        keys.extend(next(self._own) for _ in range(j, total // bs))
        return keys
