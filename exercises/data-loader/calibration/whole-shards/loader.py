"""Sharded, shuffled, resumable streaming dataset."""
from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from shards import read_shard, shard_num_samples

__all__ = ["ShardedTokenDataset"]

# Tags that give each kind of random draw its own independent stream, so that e.g. turning
# masking on cannot change the sample order.
_SHARD_ORDER, _ROW_ORDER, _MASK = 0, 1, 2


def _rng(*key: int) -> np.random.Generator:
    """A generator that is a pure function of ``key``.

    Every random draw in this module comes from a generator built on the spot from the
    values it must depend on. Nothing random is stored on the dataset object: an RNG
    created in ``__init__`` would be copied, in the same state, into every forked
    DataLoader worker (identical draws in all workers) and would be re-copied from the
    untouched parent every epoch (identical draws in all epochs).
    """
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


class ShardedTokenDataset(IterableDataset):
    """Streams the samples of a list of shards, each exactly once per epoch.

    Shards are visited in an order shuffled by (seed, epoch) and dealt out whole: rank r
    reads shards r, r + world_size, ... of that order, and its workers deal the rank's
    shards out again the same way. Each shard is read by exactly one worker, so no I/O is
    wasted. Rows inside a shard are shuffled by (seed, epoch, shard).

    A resume position counts the rank's samples in the order of its shards.
    """

    def __init__(
        self,
        shard_paths: Sequence[str | os.PathLike],
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        mask_prob: float = 0.0,
        mask_token_id: int | None = None,
    ) -> None:
        super().__init__()
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if not 0.0 <= mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
        if mask_prob > 0 and mask_token_id is None:
            raise ValueError("mask_token_id is required when mask_prob > 0")

        self.shard_paths = [os.fspath(p) for p in shard_paths]
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.mask_prob = float(mask_prob)
        self.mask_token_id = mask_token_id
        self._sizes: list[int] | None = None  # samples per shard, read lazily

        self._epoch = 0
        self._start = 0  # rank-sample number where iterations of this epoch begin (resume)
        self._position = 0  # rank-sample number after the last sample yielded in this process

    # ------------------------------------------------------------------ epochs and state

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate. Moving to another epoch drops any resume position."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if epoch != self._epoch:
            self._epoch = int(epoch)
            self._start = 0
            self._position = 0

    def state_dict(self) -> dict[str, Any]:
        """Position of this rank's stream, as plain (JSON-serializable) Python values."""
        return {
            "epoch": self._epoch,
            "samples_yielded": self._position,
            # Not needed to resume; used to refuse a state from a different configuration.
            "seed": self.seed,
            "shuffle": self.shuffle,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("seed", "shuffle", "rank", "world_size"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"state has {key}={state[key]!r}, dataset has {getattr(self, key)!r}")
        position = int(state["samples_yielded"])
        if position < 0:
            raise ValueError(f"samples_yielded must be >= 0, got {position}")
        self._epoch = int(state["epoch"])
        self._start = position
        self._position = position

    # ------------------------------------------------------------------ iteration

    def _shard_sizes(self) -> list[int]:
        if self._sizes is None:
            self._sizes = [shard_num_samples(p) for p in self.shard_paths]
        return self._sizes

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # Capture everything now, not when the generator first runs: a later set_epoch()
        # or load_state_dict() must not change an iteration already started.
        info = get_worker_info()
        num_workers, worker_id = (info.num_workers, info.id) if info is not None else (1, 0)
        self._position = self._start
        return self._generate(self._epoch, self._start, num_workers, worker_id)

    def _generate(self, epoch: int, start: int, num_workers: int, worker_id: int) -> Iterator[dict[str, Any]]:
        sizes = self._shard_sizes()
        if len(sizes) < self.world_size * num_workers:
            raise ValueError(
                f"{len(sizes)} shards cannot be split over {self.world_size} ranks x {num_workers} workers"
            )
        if self.shuffle:
            shard_order = _rng(self.seed, epoch, _SHARD_ORDER).permutation(len(sizes))
        else:
            shard_order = np.arange(len(sizes))
        rank_shards = shard_order[self.rank :: self.world_size]

        j = 0  # rank-sample number of the current shard's first sample
        for k, shard_index in enumerate(rank_shards):
            n = sizes[shard_index]
            first = j
            j += n
            if k % num_workers != worker_id or j <= start:
                continue
            shard = read_shard(self.shard_paths[shard_index])
            if self.shuffle:
                rows = _rng(self.seed, epoch, _ROW_ORDER, shard_index).permutation(n)
            else:
                rows = np.arange(n)
            for i, row in enumerate(rows):
                if first + i < start:
                    continue
                sample = self._make_sample(shard, int(row), epoch)
                self._position = first + i + 1
                yield sample

    def _make_sample(self, shard, row: int, epoch: int) -> dict[str, Any]:
        sample_id = int(shard.sample_ids[row])
        labels = torch.from_numpy(shard.sequence(row).astype(np.int64))  # astype copies
        input_ids = labels.clone()
        if self.mask_prob > 0 and len(input_ids) > 0:
            # Keyed by the sample, not by the worker: the same sample gets the same mask in
            # a given epoch whatever the rank/worker layout, a resumed run reproduces the
            # uninterrupted one, and different samples (hence workers) get different masks.
            hit = _rng(self.seed, epoch, _MASK, sample_id).random(len(input_ids)) < self.mask_prob
            input_ids[torch.from_numpy(hit)] = int(self.mask_token_id)
        return {"sample_id": sample_id, "input_ids": input_ids, "labels": labels}
