"""Prompt token ids that realize an instance's content ids in a real engine.

A token covered by content id `c` at offset `o` of its content block gets a token fixed by
(c, o), so equal ids give equal tokens, as the simulator's block keys assume
(engine_adapter/simulator/content_keys.py). Where an id covers output tokens of an earlier
request (a conversation's next turn repeats the previous answer), the prompt must repeat what
the engine actually generated there: those tokens are taken from that request's output, which
therefore has to be finished before the prompt is built (the closed loop guarantees it).
Tokens not covered by ids are drawn per request from a seeded generator: unique in practice
(a block of 32 tokens from a ~1000-token vocabulary never repeats by chance).

A request whose prompt is covered by ids to its last token should not share all of it with
another request: a greedy engine then generates the same output for both, whose blocks the
engine shares and the simulator does not (the workloads leave every prompt an own tail).
"""

from __future__ import annotations

import zlib

import numpy as np

from formulations.instance import Instance

FIRST_TOKEN = 3  # below: special tokens of common vocabularies


class ContentTokens:
    """Builds prompts in submission order and learns generated tokens as requests finish."""

    def __init__(self, instance: Instance, vocab: int, seed: int) -> None:
        self.instance = instance
        self.vocab = min(vocab, 1000)
        self.seed = seed
        self._learned: dict[tuple[int, int], int] = {}  # (content id, offset) -> generated token
        self._producer: dict[tuple[int, int], int] = {}  # (content id, offset) covering an output -> request
        for i, req in enumerate(instance.requests):
            if req.content_ids:
                per = req.content_block
                for t in range(req.prompt_len, min(req.prompt_len + req.output_len, len(req.content_ids) * per)):
                    self._producer.setdefault((req.content_ids[t // per], t % per), i)
        self._finished: set[int] = set()

    def prompt(self, index: int) -> list[int]:
        req = self.instance.requests[index]
        rng = np.random.default_rng([self.seed, zlib.crc32(req.id.encode())])
        tokens = rng.integers(FIRST_TOKEN, self.vocab, size=req.prompt_len).tolist()
        if not req.content_ids:
            return tokens
        per = req.content_block
        for t in range(min(req.prompt_len, len(req.content_ids) * per)):
            key = (req.content_ids[t // per], t % per)
            producer = self._producer.get(key)
            if producer is not None and producer != index:
                if producer not in self._finished:
                    raise ValueError(f"request {req.id!r}: its content ids repeat output tokens of request "
                                     f"{self.instance.requests[producer].id!r}, which has not finished")
                tokens[t] = self._learned[key]
            else:
                tokens[t] = self._token(key)
        return tokens

    def finished(self, index: int, output: list[int]) -> None:
        """Request `index` generated `output`: its id-covered output tokens become known."""
        req = self.instance.requests[index]
        self._finished.add(index)
        if not req.content_ids:
            return
        per = req.content_block
        for k, token in enumerate(output):
            t = req.prompt_len + k
            if t < len(req.content_ids) * per:
                self._learned.setdefault((req.content_ids[t // per], t % per), token)

    def _token(self, key: tuple[int, int]) -> int:
        return FIRST_TOKEN + zlib.crc32(f"{self.seed}:{key[0]}:{key[1]}".encode()) % (self.vocab - FIRST_TOKEN)
