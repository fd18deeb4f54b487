"""Saving and loading checkpoints.

A checkpoint holds everything serving needs: the weights, the model's constructor
arguments, the fitted featurizer state, the decision threshold, and the metrics and
configuration of the run that produced it.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from .features import Featurizer
from .model import ChurnModel

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, *, model: ChurnModel, featurizer: Featurizer,
                    threshold: float, metrics: dict | None = None,
                    config: dict | None = None) -> Path:
    """Write a checkpoint to ``path`` (replacing any file there) and return the path.

    The file is written next to ``path`` and renamed over it, so a crash or a full disk
    mid-write leaves the previous checkpoint in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "model_args": dict(model.config),
        "model_state": model.state_dict(),
        "featurizer": featurizer.state_dict(),
        "threshold": float(threshold),
        "metrics": dict(metrics or {}),
        "config": dict(config or {}),
        "saved_at": time.time(),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if checkpoint.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint format {checkpoint.get('format_version')!r}")
    return checkpoint


def restore(checkpoint: dict) -> tuple[ChurnModel, Featurizer]:
    """The model (in eval mode) and the featurizer stored in a loaded checkpoint."""
    model = ChurnModel(**checkpoint["model_args"])
    model.load_state_dict(checkpoint["model_state"])
    model.eval()
    featurizer = Featurizer.from_state_dict(checkpoint["featurizer"])
    return model, featurizer
