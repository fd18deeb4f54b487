"""Online scoring.

``ChurnPredictor`` loads checkpoints from a model directory (one ``<version>.pt`` file per
model version) and scores one request at a time. The module-level ``predict`` is the entry
point the API gateway calls; it uses one predictor per process, over the directory named
by ``$CHURNSVC_MODEL_DIR``.

A request is a dict with the account's current snapshot: ``customer_id``, the numeric
fields in ``config.NUMERIC_FEATURES`` and the ``last_ticket`` text, and optionally
``model_version`` to pin a model (the default version otherwise). The CRM sends the whole
account record, so requests also carry fields the model does not use. The response is::

    {"customer_id": str, "churn_probability": float, "churn": bool, "model_version": str}

where ``churn`` is ``churn_probability >= threshold`` of that model. A malformed request
raises ``ValueError``, which the gateway turns into a 400 response.
"""
from __future__ import annotations

import logging
import math
import os
import re
import threading
from dataclasses import dataclass

import torch

from .checkpoint import load_checkpoint, restore
from .config import GROUP_FIELD, NUMERIC_FEATURES, TEXT_FIELD
from .features import Featurizer
from .model import ChurnModel, to_tensors

logger = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = "artifacts"
DEFAULT_VERSION = "v1"
# A model version names a file inside the model directory, never a path.
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class _LoadedModel:
    version: str
    model: ChurnModel
    featurizer: Featurizer
    threshold: float


def _encode(request: dict, loaded: _LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs for one request: numeric [1, n_numeric] and tokens [1, max_tokens].

    Built by the featurizer the model was trained with, so serving cannot drift from training.
    """
    return to_tensors(loaded.featurizer.transform([request]))


def _validate(request: dict) -> None:
    """Raise ValueError unless ``request`` has every field the model needs, well typed."""
    if not isinstance(request, dict):
        raise ValueError("a request must be a JSON object")
    if not isinstance(request.get(GROUP_FIELD), str) or not request[GROUP_FIELD]:
        raise ValueError(f"{GROUP_FIELD} must be a non-empty string")
    for name in NUMERIC_FEATURES:
        value = request.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and non-negative")
    if not isinstance(request.get(TEXT_FIELD), str):
        raise ValueError(f"{TEXT_FIELD} must be a string")
    version = request.get("model_version")
    if version is not None and not isinstance(version, str):
        raise ValueError("model_version must be a string")


class ChurnPredictor:
    """Scores requests with the checkpoints in ``model_dir``, loading each version once."""

    def __init__(self, model_dir: str | os.PathLike = DEFAULT_MODEL_DIR,
                 default_version: str = DEFAULT_VERSION):
        self.model_dir = str(model_dir)
        self.default_version = default_version
        self._models: dict[str, _LoadedModel] = {}
        self._lock = threading.Lock()

    def _get(self, version: str) -> _LoadedModel:
        # Loaded lazily, once per version; the lock keeps concurrent requests from loading the
        # same checkpoint twice.
        with self._lock:
            if version not in self._models:
                if not _VERSION_RE.fullmatch(version):
                    raise ValueError(f"invalid model version {version!r}")
                path = os.path.join(self.model_dir, f"{version}.pt")
                if not os.path.isfile(path):
                    raise ValueError(f"unknown model version {version!r}")
                checkpoint = load_checkpoint(path)
                model, featurizer = restore(checkpoint)
                self._models[version] = _LoadedModel(
                    version=version,
                    model=model,
                    featurizer=featurizer,
                    threshold=float(checkpoint["threshold"]),
                )
                logger.info("loaded model %s from %s", version, path)
            return self._models[version]

    def predict(self, request: dict) -> dict:
        # The pseudonymous id only: requests carry the customer's name and email.
        logger.info("scoring request for customer %s", request.get(GROUP_FIELD))
        # Errors propagate: a malformed request is a ValueError (HTTP 400), anything else a
        # 500, never a made-up "no churn" answer.
        _validate(request)
        loaded = self._get(request.get("model_version") or self.default_version)
        numeric, tokens = _encode(request, loaded)
        with torch.no_grad():
            probability = float(torch.sigmoid(loaded.model(numeric, tokens)).item())
        return {
            "customer_id": request["customer_id"],
            "churn_probability": probability,
            "churn": probability >= loaded.threshold,
            "model_version": loaded.version,
        }


_predictor: ChurnPredictor | None = None
_predictor_lock = threading.Lock()


def predict(request: dict) -> dict:
    """Score one request with the process-wide predictor."""
    global _predictor
    with _predictor_lock:
        if _predictor is None:
            _predictor = ChurnPredictor(os.environ.get("CHURNSVC_MODEL_DIR", DEFAULT_MODEL_DIR))
    return _predictor.predict(request)
