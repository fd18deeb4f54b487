"""Pad a list of variable-length samples into a batch."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

__all__ = ["PadCollator", "IGNORE_INDEX"]

IGNORE_INDEX = -100  # label value that torch.nn.functional.cross_entropy ignores by default


def _as_int64(values: Any) -> torch.Tensor:
    """``values`` as a 1-D int64 tensor. It may share memory with ``values``: read only."""
    if isinstance(values, torch.Tensor):
        tensor = values.detach().reshape(-1)
    else:
        tensor = torch.as_tensor(list(values), dtype=torch.int64).reshape(-1)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"token ids must be integers, got {tensor.dtype}")
    return tensor.to(torch.int64)


class PadCollator:
    """Right-pads ``input_ids`` and ``labels`` to the longest sample of the batch.

    Padding is defined by each sample's length, never by token values: ``pad_id`` may also
    be a real token, which stays attended and keeps its label.
    """

    def __init__(self, pad_id: int = 0, max_length: int | None = None) -> None:
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be >= 1 or None, got {max_length}")
        self.pad_id = int(pad_id)
        self.max_length = max_length

    def __call__(self, batch: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if len(batch) == 0:
            raise ValueError("cannot collate an empty batch")

        ids_list, labels_list = [], []
        for sample in batch:
            # These may be views of the caller's tensors: only read them (they are copied
            # into freshly allocated batch tensors below), never write or return them.
            ids = _as_int64(sample["input_ids"])[: self.max_length]
            labels = _as_int64(sample["labels"])[: self.max_length]
            if ids.shape != labels.shape:
                raise ValueError(f"sample {sample.get('sample_id')}: input_ids and labels differ in length")
            ids_list.append(ids)
            labels_list.append(labels)

        lengths = torch.tensor([len(t) for t in ids_list], dtype=torch.int64)
        width = int(lengths.max())
        size = (len(batch), width)
        input_ids = torch.full(size, self.pad_id, dtype=torch.int64)
        labels = torch.full(size, IGNORE_INDEX, dtype=torch.int64)
        for i, (ids, lab) in enumerate(zip(ids_list, labels_list)):
            input_ids[i, : len(ids)] = ids  # copies into the new tensor
            labels[i, : len(lab)] = lab
        attention_mask = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).to(torch.int64)

        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "lengths": lengths,
            "sample_ids": torch.tensor([int(s["sample_id"]) for s in batch], dtype=torch.int64),
        }
