"""Evaluation loops for a classifier and a token-level LM head."""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["evaluate", "evaluate_lm"]


def _model_device(model: nn.Module, device: Any) -> torch.device:
    if device is not None:
        return torch.device(device)
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd inside."""
    model.eval()
    with torch.no_grad():
        yield


# ----------------------------------------------------------------------------- classifier


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks of ``scores``, tied values sharing the mean of their ranks."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    start = 0
    while start < len(ordered):
        stop = start + 1
        while stop < len(ordered) and ordered[stop] == ordered[start]:
            stop += 1
        ranks[order[start:stop]] = (start + 1 + stop) / 2.0  # mean of ranks start+1 .. stop
        start = stop
    return ranks


def _binary_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUROC: P(s+ > s-) + P(s+ == s-) / 2. Needs both classes present."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    ranks = _average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _auroc(probs: np.ndarray, labels: np.ndarray) -> float:
    num_classes = probs.shape[1]
    if num_classes == 2:
        positive = labels == 1
        if positive.all() or not positive.any():
            return math.nan
        return _binary_auroc(probs[:, 1], positive)
    per_class = []
    for c in range(num_classes):
        positive = labels == c
        if positive.any() and not positive.all():
            per_class.append(_binary_auroc(probs[:, c], positive))
    return float(np.mean(per_class)) if per_class else math.nan


def _macro_f1(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    tp = np.bincount(labels[preds == labels], minlength=num_classes).astype(np.float64)
    predicted = np.bincount(preds, minlength=num_classes).astype(np.float64)
    actual = np.bincount(labels, minlength=num_classes).astype(np.float64)
    fp, fn = predicted - tp, actual - tp
    present = (predicted + actual) > 0  # classes in the labels or the predictions
    f1 = 2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])
    return float(f1.mean())


def _ece(probs: np.ndarray, preds: np.ndarray, labels: np.ndarray, bins: int) -> float:
    confidence = probs.max(axis=1)
    correct = (preds == labels).astype(np.float64)
    # Bin m (1-based) holds confidences in ((m - 1) / bins, m / bins].
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.float64)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=correct, minlength=bins)
    gap = np.abs(correct_sum - conf_sum)  # = count * |accuracy - mean confidence| per bin
    return float(gap.sum() / len(labels))


def evaluate(model: nn.Module, loader: Iterable[Mapping[str, torch.Tensor]], *,
             ece_bins: int = 15, device: Any = None) -> dict[str, float | int]:
    """Classification metrics of ``model`` over every valid sample of ``loader`` (see README)."""
    if ece_bins < 1:
        raise ValueError(f"ece_bins must be >= 1, got {ece_bins}")
    device = _model_device(model, device)
    probs_parts: list[np.ndarray] = []
    pred_parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    num_classes = None
    with _evaluating(model):
        for batch in loader:
            logits = model(batch["inputs"].to(device))
            labels = batch["labels"]
            if logits.ndim != 2 or logits.shape[0] != labels.shape[0] or logits.shape[1] < 2:
                raise ValueError(f"expected logits of shape ({labels.shape[0]}, C >= 2), got {tuple(logits.shape)}")
            if num_classes is None:
                num_classes = logits.shape[1]
            elif logits.shape[1] != num_classes:
                raise ValueError("the number of classes changed between batches")
            keep = batch.get("valid")
            keep = torch.ones(labels.shape[0], dtype=torch.bool) if keep is None else keep.detach().cpu().bool()
            logits = logits.detach().cpu()[keep]
            # Only per-sample results are kept (AUROC needs every score), never whole batches.
            probs_parts.append(torch.softmax(logits.double(), dim=1).numpy())
            pred_parts.append(logits.argmax(dim=1).numpy())
            label_parts.append(labels.detach().cpu()[keep].to(torch.int64).numpy())
    if num_classes is None or sum(len(p) for p in label_parts) == 0:
        raise ValueError("the loader holds no valid samples")
    probs = np.concatenate(probs_parts)
    preds = np.concatenate(pred_parts)
    labels = np.concatenate(label_parts)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    return {
        "accuracy": float((preds == labels).mean()),
        "macro_f1": _macro_f1(preds, labels, num_classes),
        "auroc": _auroc(probs, labels),
        "ece": _ece(probs, preds, labels, ece_bins),
        "num_samples": int(len(labels)),
    }


# ----------------------------------------------------------------------------- LM head


def evaluate_lm(model: nn.Module, loader: Iterable[Mapping[str, torch.Tensor]], *,
                device: Any = None) -> dict[str, float | int]:
    """Token-weighted perplexity of ``model`` over the real (unpadded) tokens of ``loader``."""
    device = _model_device(model, device)
    total_nll = 0.0  # Python float: float64 accumulation
    total_tokens = 0
    with _evaluating(model):
        for batch in loader:
            input_ids = batch["input_ids"].to(device)
            logits = model(input_ids)
            if logits.ndim != 3 or logits.shape[:2] != input_ids.shape:
                raise ValueError(f"expected logits of shape {tuple(input_ids.shape)} + (V,), got {tuple(logits.shape)}")
            mask = batch["attention_mask"].to(device).bool()
            # Labels at padding are arbitrary: replace them (out of place) before gathering.
            labels = batch["labels"].to(device).masked_fill(~mask, 0)
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            nll = -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
            total_nll += float(nll[mask].double().sum())
            total_tokens += int(mask.sum())
            del logits, log_probs, nll  # nothing of this batch outlives it
    if total_tokens == 0:
        raise ValueError("the loader holds no unpadded tokens")
    mean_nll = total_nll / total_tokens
    return {"perplexity": math.exp(mean_nll), "nll": mean_nll, "num_tokens": total_tokens}
