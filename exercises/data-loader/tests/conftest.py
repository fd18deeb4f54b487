"""Shared fixtures: tiny synthetic shard sets and a capped way to run a DataLoader.

The shards are written here, following the format documented in the starter's shards.py,
so the tests do not depend on a submission's copy of that file. Everything is written
under pytest's tmp_path.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

VOCAB = 1000  # real tokens are drawn from [1, VOCAB); tests use 5000 as the mask token


@dataclass
class Data:
    paths: list[Path]
    ids: list[int]  # sample ids in file order
    tokens: dict[int, np.ndarray]  # sample id -> int32 tokens
    shard_of: dict[int, int]  # sample id -> shard index

    @property
    def n(self) -> int:
        return len(self.ids)


def _write(directory: Path, sizes, *, length=None, seed=0) -> Data:
    """Write shards of the given sizes. length: fixed sequence length, else random in [0, 12]."""
    rng = np.random.default_rng(seed)
    total = int(sum(sizes))
    # Non-contiguous ids, so that a loader must report the stored id, not a position.
    ids = (rng.choice(50_000, size=total, replace=False) * 3 + 11).astype(np.int64)
    lengths = np.full(total, length) if length is not None else rng.integers(0, 13, size=total)
    seqs = [rng.integers(1, VOCAB, size=int(k)).astype(np.int32) for k in lengths]

    directory.mkdir(parents=True, exist_ok=True)
    paths, shard_of, start = [], {}, 0
    for index, size in enumerate(sizes):
        chunk = seqs[start : start + size]
        offsets = np.zeros(size + 1, dtype=np.int64)
        np.cumsum([len(c) for c in chunk], out=offsets[1:])
        tokens = np.concatenate(chunk).astype(np.int32) if chunk else np.zeros(0, np.int32)
        path = directory / f"shard-{index:05d}.npz"
        np.savez(path, sample_ids=ids[start : start + size], offsets=offsets, tokens=tokens)
        paths.append(path)
        for i in ids[start : start + size]:
            shard_of[int(i)] = index
        start += size
    return Data(
        paths=paths,
        ids=[int(i) for i in ids],
        tokens={int(i): s for i, s in zip(ids, seqs)},
        shard_of=shard_of,
    )


@pytest.fixture
def make_data(tmp_path):
    counter = itertools.count()

    def make(sizes, *, length=None, seed=0) -> Data:
        return _write(tmp_path / f"data{next(counter)}", list(sizes), length=length, seed=seed)

    return make


def _collect(dataset, num_workers: int = 0, *, cap: int, batch_size=None, collate_fn=None):
    """Run a DataLoader over `dataset` and return at most `cap` items.

    The cap makes a duplicating loader fail fast instead of running long; the timeout
    makes a stuck worker fail instead of hanging.
    """
    kwargs = {}
    if num_workers > 0:
        kwargs = dict(multiprocessing_context="fork", timeout=20)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_fn, **kwargs
    )
    it = iter(loader)
    try:
        return list(itertools.islice(it, cap))
    finally:
        shutdown_workers(it)


def shutdown_workers(it) -> None:
    """Stop a DataLoader iterator's workers now. Otherwise a failed test keeps them alive
    (its traceback references the iterator) until the end of the session."""
    stop = getattr(it, "_shutdown_workers", None)
    if stop is not None:
        stop()


@pytest.fixture
def collect():
    return _collect


def ids_of(samples) -> list[int]:
    return [int(s["sample_id"]) for s in samples]


@pytest.fixture
def ids():
    return ids_of


def pytest_configure(config):
    # The tests use 3 workers on a 2-core sandbox on purpose; torch's advice is noise here.
    config.addinivalue_line("filterwarnings", "ignore:This DataLoader will create:UserWarning")
