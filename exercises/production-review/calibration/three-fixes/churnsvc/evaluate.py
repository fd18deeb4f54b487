"""Offline evaluation: batched scoring, classification metrics and threshold selection."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .features import FeatureBatch
from .model import to_tensors


def _batched_logits(model: torch.nn.Module, features: FeatureBatch,
                    batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, logits)`` for consecutive batches of ``features``, in eval mode."""
    model.eval()
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            numeric, tokens = to_tensors(features.slice(start, start + batch_size))
            yield start, model(numeric, tokens)


def predict_scores(model: torch.nn.Module, features: FeatureBatch,
                   batch_size: int = 256) -> np.ndarray:
    """Churn probability of every row, float32 [n]."""
    chunks = [torch.sigmoid(logits) for _, logits in _batched_logits(model, features, batch_size)]
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(chunks).numpy()


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (tied scores count one half); NaN with a single class."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """Accuracy, precision, recall and F1 of boolean predictions (0.0 where undefined)."""
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(predicted).astype(bool)
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = float(np.mean(predicted == labels)) if len(labels) else 0.0
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}


def best_threshold(labels: np.ndarray, scores: np.ndarray,
                   candidates: np.ndarray | None = None) -> float:
    """The candidate threshold on ``scores`` with the highest F1 (the lowest one on ties)."""
    if candidates is None:
        candidates = np.round(np.linspace(0.05, 0.95, 19), 2)
    scores = np.asarray(scores)
    best, best_f1 = 0.5, -1.0
    for threshold in candidates:
        f1 = classification_metrics(labels, scores >= threshold)["f1"]
        if f1 > best_f1:
            best, best_f1 = float(threshold), f1
    return best


def evaluate(model: torch.nn.Module, features: FeatureBatch, labels: np.ndarray, *,
             batch_size: int = 256, threshold: float = 0.5) -> dict:
    """Log loss, ROC AUC and thresholded metrics of ``model`` on a labelled set.

    Returns a dict with ``log_loss``, ``auc``, ``accuracy``, ``precision``, ``recall``,
    ``f1``, ``threshold`` and ``n`` (the number of rows).
    """
    labels = np.asarray(labels, dtype=np.float32)
    batch_losses, scores = [], []
    for start, logits in _batched_logits(model, features, batch_size):
        target = torch.from_numpy(labels[start : start + len(logits)])
        batch_losses.append(F.binary_cross_entropy_with_logits(logits, target).item())
        scores.append(torch.sigmoid(logits).numpy())
    scores = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    metrics = classification_metrics(labels, scores >= threshold)
    metrics["log_loss"] = float(np.mean(batch_losses)) if batch_losses else float("nan")
    metrics["auc"] = roc_auc(labels, scores)
    metrics["threshold"] = float(threshold)
    metrics["n"] = int(len(labels))
    return metrics
