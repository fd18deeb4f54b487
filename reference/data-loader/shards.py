"""Shard file format and helpers. GIVEN: you do not need to change this file.

A shard is one ``.npz`` file (``numpy.savez``, no pickled objects) holding a batch of
variable-length token sequences in CSR layout:

    sample_ids  int64 [n]      globally unique, non-negative id of each sample
    offsets     int64 [n + 1]  offsets[0] == 0; sample i is tokens[offsets[i]:offsets[i + 1]]
    tokens      int32 [offsets[n]]

A shard may hold any number of samples, including zero. A data set is a list of shard
paths; its "file order" is shard by shard in list order, and inside a shard by row.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["Shard", "write_shards", "read_shard", "list_shards", "shard_num_samples"]


@dataclass(frozen=True)
class Shard:
    """The contents of one shard file."""

    sample_ids: np.ndarray  # int64 [n]
    offsets: np.ndarray  # int64 [n + 1]
    tokens: np.ndarray  # int32 [offsets[-1]]

    def __len__(self) -> int:
        return int(self.sample_ids.shape[0])

    def sequence(self, row: int) -> np.ndarray:
        """Tokens of the sample at ``row``: an int32 view into ``tokens`` (copy before changing it)."""
        return self.tokens[self.offsets[row] : self.offsets[row + 1]]


def write_shards(
    directory: str | os.PathLike,
    sequences: Sequence[Sequence[int]],
    num_shards: int | None = None,
    *,
    shard_sizes: Sequence[int] | None = None,
    sample_ids: Sequence[int] | None = None,
) -> list[Path]:
    """Write ``sequences`` as shards into ``directory`` and return the shard paths in order.

    Give exactly one of ``num_shards`` (contiguous split, sizes as even as possible) or
    ``shard_sizes`` (explicit sizes, zeros allowed, summing to ``len(sequences)``).
    ``sample_ids`` defaults to ``0 .. len(sequences) - 1``; ids must be unique and >= 0.
    Files are named ``shard-00000.npz``, ``shard-00001.npz``, ...
    """
    n = len(sequences)
    if (num_shards is None) == (shard_sizes is None):
        raise ValueError("give exactly one of num_shards and shard_sizes")
    if shard_sizes is None:
        if num_shards < 1:
            raise ValueError("num_shards must be >= 1")
        shard_sizes = [len(part) for part in np.array_split(np.arange(n), num_shards)]
    shard_sizes = [int(s) for s in shard_sizes]
    if any(s < 0 for s in shard_sizes) or sum(shard_sizes) != n:
        raise ValueError(f"shard_sizes must be >= 0 and sum to {n}")
    ids = np.arange(n, dtype=np.int64) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
    if ids.shape != (n,) or len(np.unique(ids)) != n or (ids < 0).any():
        raise ValueError("sample_ids must be unique, non-negative, one per sequence")

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    start = 0
    for index, size in enumerate(shard_sizes):
        chunk = [np.asarray(seq, dtype=np.int32).reshape(-1) for seq in sequences[start : start + size]]
        lengths = np.array([len(c) for c in chunk], dtype=np.int64)
        offsets = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.concatenate(chunk) if chunk else np.zeros(0, dtype=np.int32)
        path = directory / f"shard-{index:05d}.npz"
        np.savez(path, sample_ids=ids[start : start + size], offsets=offsets, tokens=tokens.astype(np.int32))
        paths.append(path)
        start += size
    return paths


def read_shard(path: str | os.PathLike) -> Shard:
    """Load a whole shard into memory."""
    with np.load(path, allow_pickle=False) as data:
        return Shard(
            sample_ids=data["sample_ids"].astype(np.int64, copy=False),
            offsets=data["offsets"].astype(np.int64, copy=False),
            tokens=data["tokens"].astype(np.int32, copy=False),
        )


def shard_num_samples(path: str | os.PathLike) -> int:
    """Number of samples in a shard, without reading its tokens."""
    with np.load(path, allow_pickle=False) as data:
        return int(data["sample_ids"].shape[0])


def list_shards(directory: str | os.PathLike) -> list[Path]:
    """All ``shard-*.npz`` files of ``directory``, sorted by name (= file order)."""
    return sorted(Path(directory).glob("shard-*.npz"))
