"""Prompt features for learned length predictors.

Text: word 1-2-gram hashing (no vocabulary to store, so the artifact stays small and any prompt
can be featurized), TF-IDF weighted, then compressed by a seeded truncated SVD into a few dense
components a tree ensemble can split on. Plus a handful of shape features that correlate with
answer length: prompt tokens, characters, lines, code, questions, non-ASCII share.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

NUMERIC_FEATURES = ("log_prompt_len", "log_chars", "log_lines", "code", "questions", "non_ascii", "digits")
_CODE = re.compile(r"```|\bdef |\bclass |;\s*$|\{\s*$|</?\w+>", re.MULTILINE)


@dataclass(frozen=True)
class FeatureConfig:
    hash_features: int = 2**15
    ngram_max: int = 2
    svd_components: int = 64
    max_chars: int = 20_000  # longer prompts are cut (their length is still a feature)

    def to_dict(self) -> dict:
        return asdict(self)


def numeric_features(texts: Sequence[str], prompt_len: np.ndarray) -> np.ndarray:
    """(n, len(NUMERIC_FEATURES)) shape features of the prompts."""
    out = np.empty((len(texts), len(NUMERIC_FEATURES)), dtype=np.float64)
    for i, text in enumerate(texts):
        n = max(len(text), 1)
        out[i, 1] = np.log1p(len(text))
        out[i, 2] = np.log1p(text.count("\n"))
        out[i, 3] = len(_CODE.findall(text[:20_000]))
        out[i, 4] = text.count("?")
        out[i, 5] = sum(ch > "\x7f" for ch in text[:5_000]) / min(n, 5_000)
        out[i, 6] = sum(ch.isdigit() for ch in text[:5_000]) / min(n, 5_000)
    out[:, 0] = np.log1p(np.asarray(prompt_len, dtype=np.float64))
    out[:, 3] = np.log1p(out[:, 3])
    out[:, 4] = np.log1p(out[:, 4])
    return out


class PromptFeaturizer:
    """Fit on training prompts, then map any prompts to a dense (n, d) matrix."""

    def __init__(self, config: FeatureConfig, seed: int) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

        self.config = config
        self.hasher = HashingVectorizer(n_features=config.hash_features, ngram_range=(1, config.ngram_max),
                                        alternate_sign=False, norm=None, dtype=np.float32)
        self.tfidf = TfidfTransformer(sublinear_tf=True)
        self.svd = TruncatedSVD(n_components=config.svd_components, random_state=seed)

    def _cut(self, texts: Sequence[str]) -> list[str]:
        return [t[: self.config.max_chars] for t in texts]

    def fit_transform(self, texts: Sequence[str], prompt_len: np.ndarray) -> np.ndarray:
        counts = self.hasher.transform(self._cut(texts))
        text_part = self.svd.fit_transform(self.tfidf.fit_transform(counts))
        return np.hstack([numeric_features(texts, prompt_len), text_part])

    def transform(self, texts: Sequence[str], prompt_len: np.ndarray) -> np.ndarray:
        counts = self.hasher.transform(self._cut(texts))
        text_part = self.svd.transform(self.tfidf.transform(counts))
        return np.hstack([numeric_features(texts, prompt_len), text_part])
