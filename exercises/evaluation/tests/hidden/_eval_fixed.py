"""Trusted helpers for the hidden tests: fixed models, batch builders, synthetic data and
float64 NumPy reference metrics written from the README's definitions.

Nothing here imports the submission. The synthetic classification data keep every two
different scores at least GAP apart (and every confidence GAP away from an ECE bin edge),
so a float32 implementation and the float64 reference see the same order, the same ties
and the same bins: ties happen only between identical logit rows.
"""
from __future__ import annotations

import copy
import gc
import math
import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn

GAP = 1e-5  # minimum distance between two different softmax scores of a class (and to bin edges)
ECE_BINS = (10, 15)  # bin counts the ECE tests use; confidences keep clear of their edges


# ----------------------------------------------------------------------------- models


class FixedLogits(nn.Module):
    """Returns its inputs as the logits, so a test chooses them exactly.

    The frozen scale of 1 gives the model a parameter (a device to look up) without
    changing a bit of the output, and keeps the output free of autograd history.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()), requires_grad=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs * self.scale


class TableLM(nn.Module):
    """A token-level head whose logits are looked up per input id: ``table[input_ids]``.

    Test data give every (sequence, position) its own id, so re-batching the same sequences
    gives the same logits for every real token.
    """

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone(), requires_grad=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.table[input_ids]


class Recorder(nn.Module):
    """Wraps a network and records, for every forward call, the grad mode, the training
    flags of its modules and a copy of the output."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.grad_enabled: list[bool] = []
        self.training_flags: list[list[bool]] = []
        self.outputs: list[torch.Tensor] = []

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        self.grad_enabled.append(torch.is_grad_enabled())
        self.training_flags.append([m.training for m in self.modules()])
        out = self.net(inputs)
        self.outputs.append(out.detach().clone())
        return out


def mlp(num_features: int = 8, num_classes: int = 3, *, dropout: float = 0.0, batchnorm: bool = False,
        seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(num_features, 16)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(16))
    layers.append(nn.ReLU())
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(16, num_classes))
    return nn.Sequential(*layers)


def tiny_lm(vocab: int = 20, dim: int = 16, *, dropout: float = 0.0, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Embedding(vocab, dim)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(dim, vocab))
    return nn.Sequential(*layers)


def eval_forward(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The model's eval-mode output, computed on a copy (the model itself is left alone)."""
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        return twin(inputs)


# ----------------------------------------------------------------------------- batches


def class_batches(inputs: torch.Tensor, labels: torch.Tensor, sizes, valid: torch.Tensor | None = None) -> list[dict]:
    """Split samples into consecutive batches of the given sizes (each batch's own tensors)."""
    assert sum(sizes) == len(labels), (sizes, len(labels))
    batches, start = [], 0
    for size in sizes:
        batch = {"inputs": inputs[start:start + size].clone(), "labels": labels[start:start + size].clone()}
        if valid is not None:
            batch["valid"] = valid[start:start + size].clone()
        batches.append(batch)
        start += size
    return batches


def random_features(seed: int, n: int, num_features: int = 8, num_classes: int = 3):
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, num_features, generator=gen)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    return inputs, labels


# ----------------------------------------------------------------------------- classification data


def softmax64(logits) -> np.ndarray:
    """Float64 softmax; identical rows get bit-identical probabilities (computed once per row)."""
    logits = np.asarray(logits, dtype=np.float64)
    unique, inverse = np.unique(logits, axis=0, return_inverse=True)
    shifted = unique - unique.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=1, keepdims=True))[np.asarray(inverse).reshape(-1)]


def _separated(logits: np.ndarray) -> bool:
    probs = softmax64(logits)
    for c in range(probs.shape[1]):
        values = np.unique(probs[:, c])
        if len(values) > 1 and np.diff(values).min() <= GAP:
            return False
    confidence = probs.max(axis=1)
    for bins in ECE_BINS:
        edges = np.arange(bins + 1) / bins
        if np.abs(confidence[:, None] - edges[None, :]).min() <= GAP:
            return False
    return True


def make_classification(seed: int, n: int, num_classes: int, *, protos: int | None = None, weights=None,
                        hit: float = 0.6, scale: float = 1.5, boost: float = 2.0, accept=None):
    """(logits float32 (n, C), labels int64 (n,)): predictions right about `hit` of the time.

    protos: draw the rows from that many prototype rows (ties between samples), else every
    row is its own. accept(logits, labels) -> bool: extra conditions a test needs.
    """
    for attempt in range(500):
        rng = np.random.default_rng([seed, attempt])
        labels = rng.choice(num_classes, size=n, p=weights)
        if protos is None:
            logits = rng.normal(0.0, scale, (n, num_classes))
            hits = rng.random(n) < hit
            logits[np.flatnonzero(hits), labels[hits]] += boost
        else:
            table = rng.normal(0.0, 2 * scale, (protos, num_classes))
            best = table.argmax(axis=1)
            rows = []
            for y in labels:
                matching = np.flatnonzero(best == y)
                if len(matching) and rng.random() < hit:
                    rows.append(int(rng.choice(matching)))
                else:
                    rows.append(int(rng.integers(protos)))
            logits = table[rows]
        logits = logits.astype(np.float32)
        if _separated(logits) and (accept is None or accept(logits, labels)):
            return torch.from_numpy(logits), torch.from_numpy(labels.astype(np.int64))
    raise RuntimeError("no data set met the conditions")  # a fault of the test data, not of a submission


def tied_pair_fraction(logits: np.ndarray, labels: np.ndarray, column: int, positive_class: int) -> float:
    """Fraction of (positive, negative) pairs whose scores in `column` are equal."""
    scores = softmax64(logits)[:, column]
    positive = labels == positive_class
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return 0.0
    return float((pos[:, None] == neg[None, :]).mean())


# ----------------------------------------------------------------------------- reference metrics


def ref_accuracy(logits, labels) -> float:
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    return float((logits.argmax(axis=1) == labels).mean())


def _f1_per_class(preds: np.ndarray, labels: np.ndarray, classes) -> list[float]:
    out = []
    for c in classes:
        tp = float(np.sum((preds == c) & (labels == c)))
        fp = float(np.sum((preds == c) & (labels != c)))
        fn = float(np.sum((preds != c) & (labels == c)))
        out.append(2 * tp / (2 * tp + fp + fn))
    return out


def ref_macro_f1(logits, labels) -> float:
    """Mean F1 over the classes present in the labels or the predictions."""
    preds, labels = np.asarray(logits, np.float64).argmax(axis=1), np.asarray(labels)
    classes = sorted(set(preds.tolist()) | set(labels.tolist()))
    return float(np.mean(_f1_per_class(preds, labels, classes)))


def ref_weighted_f1(logits, labels) -> float:
    preds, labels = np.asarray(logits, np.float64).argmax(axis=1), np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    f1 = _f1_per_class(preds, labels, classes)
    support = [np.sum(labels == c) for c in classes]
    return float(np.dot(f1, support) / np.sum(support))


def ref_micro_f1(logits, labels) -> float:
    return ref_accuracy(logits, labels)  # single-label multi-class: micro-F1 == accuracy


def _pairwise_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(s+ > s-) + P(s+ == s-) / 2 over every (positive, negative) pair."""
    pos, neg = scores[positive], scores[~positive]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def ref_auroc(logits, labels, *, scores: str = "probs") -> float:
    labels = np.asarray(labels)
    values = softmax64(logits) if scores == "probs" else np.asarray(logits, np.float64)
    num_classes = values.shape[1]
    if num_classes == 2:
        positive = labels == 1
        return _pairwise_auc(values[:, 1], positive) if 0 < positive.sum() < len(labels) else math.nan
    per_class = [_pairwise_auc(values[:, c], labels == c) for c in range(num_classes)
                 if 0 < np.sum(labels == c) < len(labels)]
    return float(np.mean(per_class)) if per_class else math.nan


def ref_ece(logits, labels, bins: int) -> float:
    probs, labels = softmax64(logits), np.asarray(labels)
    confidence = probs.max(axis=1)
    correct = (np.asarray(logits, np.float64).argmax(axis=1) == labels).astype(np.float64)
    total = 0.0
    for m in range(1, bins + 1):
        in_bin = (confidence > (m - 1) / bins) & (confidence <= m / bins)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


# ----------------------------------------------------------------------------- LM data


class LMData:
    """Sequences with fixed per-position logits, served by ``TableLM(self.table)``.

    Id 0 is the padding position: its logits strongly predict token 1 while padded positions
    carry the label 0, so counting padding visibly changes the perplexity.
    """

    def __init__(self, seed: int, lengths, vocab: int = 13, scale: float = 2.0) -> None:
        rng = np.random.default_rng(seed)
        self.vocab = vocab
        self.lengths = list(lengths)
        total = sum(self.lengths)
        table = rng.normal(0.0, scale, (total + 1, vocab))
        table[0] = -8.0
        table[0, 1] = 8.0
        self.table = torch.from_numpy(table.astype(np.float32))
        self.keys, self.labels = [], []
        start = 1
        for length in self.lengths:
            self.keys.append(torch.arange(start, start + length, dtype=torch.int64))
            # labels: the argmax token about half of the time, else random (never the pad label 0)
            best = table[start:start + length].argmax(axis=1)
            rand = rng.integers(1, vocab, size=length)
            self.labels.append(torch.from_numpy(np.where(rng.random(length) < 0.5, best, rand).astype(np.int64)))
            start += length

    def model(self) -> TableLM:
        return TableLM(self.table)

    def batches(self, sizes, *, width: int | None = None) -> list[dict]:
        """Consecutive sequences in batches of the given sizes, right-padded to the batch's
        longest sequence (or to `width`)."""
        assert sum(sizes) == len(self.lengths)
        out, start = [], 0
        for size in sizes:
            members = range(start, start + size)
            t = width or max(self.lengths[i] for i in members)
            ids = torch.zeros(size, t, dtype=torch.int64)
            labels = torch.zeros(size, t, dtype=torch.int64)
            mask = torch.zeros(size, t, dtype=torch.int64)
            for row, i in enumerate(members):
                length = self.lengths[i]
                ids[row, :length] = self.keys[i]
                labels[row, :length] = self.labels[i]
                mask[row, :length] = 1
            out.append({"input_ids": ids, "labels": labels, "attention_mask": mask})
            start += size
        return out

    def reference(self) -> tuple[float, float, int]:
        """(perplexity, mean nll, number of tokens) over every real token, in float64."""
        table = self.table.double().numpy()
        nll = []
        for keys, labels in zip(self.keys, self.labels):
            logits = table[keys.numpy()]
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            nll.append(-log_probs[np.arange(len(labels)), labels.numpy()])
        nll = np.concatenate(nll)
        return float(np.exp(nll.mean())), float(nll.mean()), int(len(nll))


# ----------------------------------------------------------------------------- comparisons


def close(got, want: float, *, rel: float = 1e-5, abs_: float = 1e-7) -> bool:
    got = float(got)
    if math.isnan(want):
        return math.isnan(got)
    return got == pytest.approx(want, rel=rel, abs=abs_)


def same_metrics(a: dict, b: dict, keys, *, rel: float = 1e-5) -> list[str]:
    """Keys whose values differ between two results of the same submission."""
    return [k for k in keys if not close(a[k], float(b[k]), rel=rel, abs_=1e-7)]


def snapshot(obj):
    """A deep copy of nested dicts/lists of tensors, to compare against later."""
    return copy.deepcopy(obj)


def same_tensors(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_tensors(x, y) for x, y in zip(a, b))
    return a == b


# ----------------------------------------------------------------------------- memory


def held_bytes(min_bytes: int) -> int:
    """Bytes held by live plain tensors of at least `min_bytes` (each storage once), plus the
    Python/NumPy heap traced by tracemalloc (NumPy reports its buffers there)."""
    traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
    storages = {}
    for obj in gc.get_objects():
        if type(obj) is torch.Tensor:
            storage = obj.untyped_storage()
            if storage.nbytes() >= min_bytes:
                storages[storage.data_ptr()] = storage.nbytes()
    return traced + sum(storages.values())
