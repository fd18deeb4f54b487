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

    Epoch stream: the shards are visited in an order shuffled by (seed, epoch), and the
    rows of each shard are shuffled by (seed, epoch, shard). Every rank and every worker
    computes this same stream (from shard sizes alone) and keeps one contiguous block of it:

    * rank split: with N = len // R * R, rank r owns positions [r*N//R, (r+1)*N//R).
      The tail that does not divide evenly is dropped, so all ranks get exactly the same
      number of samples, and the rank's samples do not depend on the number of workers.
    * worker split: the rank's samples from the resume position ``start`` on are cut the
      same way into W contiguous blocks, one per worker. Together the workers cover them
      exactly once; a worker whose block is empty (more ranks x workers than samples)
      simply yields nothing.

    Contiguous blocks (rather than striding, "every W-th sample") mean a worker reads only
    the shards that overlap its block, not nearly every shard.

    Positions inside a rank ("rank-sample numbers") are what ``state_dict`` records, so a
    state saved while iterating with ``num_workers=0`` can be resumed with any number of
    workers.
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
        # DDP needs every rank to see the same number of samples: drop the last
        # len % world_size samples of the epoch.
        total = sum(sizes) // self.world_size * self.world_size
        rank_lo = self.rank * total // self.world_size  # stream position of rank-sample 0
        rank_len = total // self.world_size
        remaining = max(rank_len - start, 0)
        # This worker's block [lo, hi) of stream positions.
        lo = rank_lo + start + worker_id * remaining // num_workers
        hi = rank_lo + start + (worker_id + 1) * remaining // num_workers
        if lo >= hi:
            return

        if self.shuffle:
            shard_order = _rng(self.seed, epoch, _SHARD_ORDER).permutation(len(sizes))
        else:
            shard_order = np.arange(len(sizes))
        offset = 0  # stream position of the current shard's first sample
        for shard_index in shard_order:
            n = sizes[shard_index]
            first, last = max(lo, offset), min(hi, offset + n)  # overlap with our block
            offset += n
            if first >= last:
                continue  # nothing for this worker here: don't even read the shard

            shard = read_shard(self.shard_paths[shard_index])
            if self.shuffle:
                rows = _rng(self.seed, epoch, _ROW_ORDER, shard_index).permutation(n)
            else:
                rows = np.arange(n)
            shard_start = offset - n
            for pos in range(first, last):
                sample = self._make_sample(shard, int(rows[pos - shard_start]), epoch)
                # Update before yielding: when the consumer holds this sample, it counts as
                # delivered, so a state_dict() taken now resumes right after it.
                self._position = pos - rank_lo + 1
                yield sample
            if offset >= hi:
                return

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
