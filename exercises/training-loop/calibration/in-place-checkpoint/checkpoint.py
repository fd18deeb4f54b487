"""Atomic checkpoint files."""
from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` (torch.save writes the whole file in one call)."""
    torch.save(state, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The state saved by save_checkpoint, with every tensor on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)
