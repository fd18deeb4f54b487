"""The training loop. YOUR CODE: implement everything marked NotImplementedError.

See README.md for the exact contract; the public tests are in tests/public.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from checkpoint import load_checkpoint, save_checkpoint  # noqa: F401  (your atomic checkpoints)
from schedule import lr_at  # noqa: F401  (your schedule)

__all__ = ["IGNORE_INDEX", "accumulation_step", "clip_and_step", "train"]

IGNORE_INDEX = -100


def accumulation_step(model: torch.nn.Module, window: Sequence[dict], *, start: int = 0, stop: int | None = None,
                      precision: str = "fp32", scaler: torch.amp.GradScaler | None = None) -> float:
    """Forward and backward over the micro-batches ``window[start:stop]`` of one accumulation
    window, adding to ``p.grad``; returns this call's share of the window's mean token loss."""
    raise NotImplementedError


def clip_and_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, max_grad_norm: float | None = None,
                  scaler: torch.amp.GradScaler | None = None) -> float:
    """Unscale (with a scaler), clip the total gradient norm, take the optimizer step; returns
    the total norm of the unscaled gradients before clipping."""
    raise NotImplementedError


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, data: Sequence[dict], *, epochs: int = 1,
          accum_steps: int = 1, base_lr: float = 1e-3, warmup_steps: int = 0, min_lr: float = 0.0,
          max_grad_norm: float | None = None, precision: str = "fp32", scaler: torch.amp.GradScaler | None = None,
          checkpoint_path: str | os.PathLike | None = None, checkpoint_every: int = 0,
          stop_after: int | None = None) -> list[dict[str, Any]]:
    """Train for ``epochs`` passes over ``data``; returns one record per optimizer step taken."""
    raise NotImplementedError
