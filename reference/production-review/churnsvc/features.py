"""Feature extraction for training and offline evaluation.

``Featurizer`` turns snapshot records into a standardised numeric matrix and a padded
matrix of token ids for the ticket text. It is fitted once per training run and its
``state_dict()`` is stored in the checkpoint, so the transform can be rebuilt later.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .config import LOG_FEATURES, NUMERIC_FEATURES, TEXT_FIELD

PAD_ID = 0
UNK_ID = 1
_TOKEN_RE = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def build_vocab(texts: Iterable[str], min_count: int) -> dict[str, int]:
    """Token ids for the tokens seen at least ``min_count`` times, numbered from 2 up."""
    counts = Counter(tok for text in texts for tok in tokenize(text))
    # Sorted, so that token ids do not depend on set order (which PYTHONHASHSEED changes).
    frequent = sorted(tok for tok, n in counts.items() if n >= min_count)
    return {tok: i for i, tok in enumerate(frequent, start=2)}


def numeric_row(record: dict) -> list[float]:
    """The raw numeric features of one record, money columns log-transformed."""
    row = []
    for name in NUMERIC_FEATURES:
        value = float(record[name])
        if name in LOG_FEATURES:
            value = math.log1p(max(value, 0.0))
        row.append(value)
    return row


@dataclass
class FeatureBatch:
    """Model inputs for ``n`` rows."""

    numeric: np.ndarray  # float32 [n, len(NUMERIC_FEATURES)]
    tokens: np.ndarray  # int64 [n, max_tokens], right-padded with PAD_ID

    def __len__(self) -> int:
        return len(self.numeric)

    def slice(self, start: int, stop: int) -> FeatureBatch:
        return FeatureBatch(self.numeric[start:stop], self.tokens[start:stop])

    def take(self, index: np.ndarray) -> FeatureBatch:
        return FeatureBatch(self.numeric[index], self.tokens[index])


class Featurizer:
    """Standardises the numeric columns and maps ticket text to token ids.

    Token ids 0 and 1 are padding and unknown; the tokens seen at least
    ``min_token_count`` times while fitting get ids from 2 up. Texts longer than
    ``max_tokens`` tokens are truncated.
    """

    def __init__(self, max_tokens: int = 12, min_token_count: int = 3):
        self.max_tokens = max_tokens
        self.min_token_count = min_token_count
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.vocab: dict[str, int] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + 2

    def fit(self, records: list[dict]) -> Featurizer:
        if not records:
            raise ValueError("cannot fit a Featurizer on no records")
        values = np.array([numeric_row(r) for r in records], dtype=np.float64)
        self.mean_ = values.mean(axis=0)
        std = values.std(axis=0)
        self.std_ = np.where(std > 1e-8, std, 1.0)
        self.vocab = build_vocab((r[TEXT_FIELD] for r in records), self.min_token_count)
        return self

    def transform(self, records: list[dict]) -> FeatureBatch:
        if self.mean_ is None:
            raise RuntimeError("Featurizer.transform() called before fit()")
        values = np.array([numeric_row(r) for r in records], dtype=np.float64)
        values = values.reshape(len(records), len(NUMERIC_FEATURES))
        numeric = ((values - self.mean_) / self.std_).astype(np.float32)

        tokens = np.full((len(records), self.max_tokens), PAD_ID, dtype=np.int64)
        for i, record in enumerate(records):
            ids = [self.vocab.get(tok, UNK_ID) for tok in tokenize(record[TEXT_FIELD])]
            ids = ids[: self.max_tokens]
            tokens[i, : len(ids)] = ids
        return FeatureBatch(numeric=numeric, tokens=tokens)

    def state_dict(self) -> dict:
        return {
            "max_tokens": self.max_tokens,
            "min_token_count": self.min_token_count,
            "mean": [float(v) for v in self.mean_],  # plain data: loadable with weights_only
            "std": [float(v) for v in self.std_],
            "vocab": dict(self.vocab),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> Featurizer:
        featurizer = cls(max_tokens=state["max_tokens"], min_token_count=state["min_token_count"])
        featurizer.mean_ = np.asarray(state["mean"], dtype=np.float64)
        featurizer.std_ = np.asarray(state["std"], dtype=np.float64)
        featurizer.vocab = dict(state["vocab"])
        return featurizer
