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
import os
import threading
from dataclasses import dataclass

import torch

from .checkpoint import load_checkpoint, restore
from .config import GROUP_FIELD, TEXT_FIELD
from .features import PAD_ID, UNK_ID, numeric_row
from .model import ChurnModel

logger = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = "artifacts"
DEFAULT_VERSION = "v1"


@dataclass
class _LoadedModel:
    version: str
    model: ChurnModel
    mean: torch.Tensor
    std: torch.Tensor
    vocab: dict[str, int]
    max_tokens: int
    threshold: float


def _encode(request: dict, loaded: _LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs for one request: numeric [1, n_numeric] and tokens [1, max_tokens]."""
    values = torch.tensor(numeric_row(request), dtype=torch.float32)
    numeric = ((values - loaded.mean) / loaded.std).unsqueeze(0)

    words = request[TEXT_FIELD].lower().split()
    ids = [loaded.vocab.get(word, UNK_ID) for word in words]
    ids = ids[: loaded.max_tokens]
    tokens = torch.full((1, loaded.max_tokens), PAD_ID, dtype=torch.int64)
    tokens[0, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return numeric, tokens


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
                path = os.path.join(self.model_dir, f"{version}.pt")
                checkpoint = load_checkpoint(path)
                model, featurizer = restore(checkpoint)
                self._models[version] = _LoadedModel(
                    version=version,
                    model=model,
                    mean=torch.tensor(featurizer.mean_, dtype=torch.float32),
                    std=torch.tensor(featurizer.std_, dtype=torch.float32),
                    vocab=featurizer.vocab,
                    max_tokens=featurizer.max_tokens,
                    threshold=float(checkpoint["threshold"]),
                )
                logger.info("loaded model %s from %s", version, path)
            return self._models[version]

    def predict(self, request: dict) -> dict:
        # The pseudonymous id only: requests carry the customer's name and email.
        logger.info("scoring request for customer %s", request.get(GROUP_FIELD))
        try:
            loaded = self._get(str(request.get("model_version") or self.default_version))
            numeric, tokens = _encode(request, loaded)
            with torch.no_grad():
                probability = float(torch.sigmoid(loaded.model(numeric, tokens)).item())
        except:
            logger.warning("scoring failed for customer %s, returning the default",
                           request.get("customer_id"))
            return {"customer_id": request.get("customer_id"), "churn_probability": 0.0,
                    "churn": False, "model_version": None}
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
