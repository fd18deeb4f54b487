"""Evaluation loops. YOUR CODE: implement everything marked NotImplementedError.

See README.md for the exact contract (batch formats, metric definitions, return types);
the public tests are in tests/public.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from torch import nn

__all__ = ["evaluate", "evaluate_lm"]


def evaluate(model: nn.Module, loader: Iterable[Mapping[str, torch.Tensor]], *,
             ece_bins: int = 15, device: Any = None) -> dict[str, float | int]:
    """Classification metrics over every valid sample of `loader`.

    Returns {"accuracy": float, "macro_f1": float, "auroc": float, "ece": float,
    "num_samples": int}.
    """
    raise NotImplementedError


def evaluate_lm(model: nn.Module, loader: Iterable[Mapping[str, torch.Tensor]], *,
                device: Any = None) -> dict[str, float | int]:
    """Token-weighted perplexity over the unpadded tokens of `loader`.

    Returns {"perplexity": float, "nll": float, "num_tokens": int}.
    """
    raise NotImplementedError
