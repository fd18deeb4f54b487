"""Trusted helpers for the hidden tests: schema-complete synthetic records, requests, a tiny
fixed model, fixed batches, and a model directory written with the submission's own
checkpoint code (the one place a helper calls the submission; every caller says so).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NUMERIC = ("tenure_months", "monthly_charges", "total_charges", "support_calls_90d",
           "late_payments_12m")
WORDS = ("billing", "error", "refund", "requested", "slow", "internet", "outage", "cancel",
         "contract", "question", "about", "plan", "upgrade", "router", "thanks", "invoice")
PERSON = {"name": "Grace Hopper", "email": "grace.hopper@example.com"}


def records(n_customers: int = 40, months: int = 3, seed: int = 0) -> list[dict]:
    """Snapshot records with every field of the service's schema, ordered by customer."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_customers):
        risk = float(rng.normal())
        start = int(rng.integers(1, 40))
        for m in range(months):
            calls = int(rng.poisson(np.exp(0.3 + 0.7 * risk)))
            words = rng.choice(WORDS, size=int(rng.integers(1, 6)))
            out.append({
                "customer_id": f"K{seed}-{c:04d}",
                "snapshot_month": f"2024-{m + 1:02d}",
                "name": f"Person {c}",
                "email": f"person{c}@example.com",
                "plan": "standard",
                "tenure_months": start + m,
                "monthly_charges": round(float(rng.uniform(20, 90)), 2),
                "total_charges": round(float(rng.uniform(20, 4000)), 2),
                "support_calls_90d": calls,
                "late_payments_12m": int(rng.poisson(0.5)),
                "last_ticket": " ".join(str(w) for w in words),
                "churned_next_month": int(rng.random() < 1 / (1 + np.exp(-(2 * risk - 1)))),
            })
    return out


def request(**changes) -> dict:
    """A well-formed scoring request, with the account's personal data as the CRM sends it."""
    base = {
        "customer_id": "K-0042",
        **PERSON,
        "plan": "premium",
        "tenure_months": 14,
        "monthly_charges": 71.5,
        "total_charges": 1003.25,
        "support_calls_90d": 3,
        "late_payments_12m": 1,
        "last_ticket": "Billing ERROR, refund requested... slow internet! Cancel contract?",
    }
    base.update(changes)
    return base


class TinyNet(nn.Module):
    """A fixed stand-in for the service's model: forward(numeric, tokens) -> logits [B]."""

    def __init__(self, n_numeric: int = 5, vocab_size: int = 32, dropout: float = 0.0,
                 seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.embed = nn.Parameter(torch.randn(vocab_size, 4, generator=gen) * 0.5)
        self.w_num = nn.Parameter(torch.randn(n_numeric, 8, generator=gen) * 0.5)
        self.w_txt = nn.Parameter(torch.randn(4, 8, generator=gen) * 0.5)
        self.w_out = nn.Parameter(torch.randn(8, generator=gen) * 0.5)
        self.bias = nn.Parameter(torch.zeros(()))
        self.dropout = dropout

    def forward(self, numeric: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != 0).float().unsqueeze(-1)
        text = (self.embed[tokens] * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        h = torch.tanh(numeric @ self.w_num + text @ self.w_txt)
        h = F.dropout(h, p=self.dropout, training=self.training)
        return h @ self.w_out + self.bias


def eval_scores(model: TinyNet, numeric: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Sigmoid of the eval-mode forward on a copy of the model (the original is untouched)."""
    net = copy.deepcopy(model).eval()
    with torch.no_grad():
        return torch.sigmoid(net(torch.from_numpy(numeric), torch.from_numpy(tokens))).numpy()


def feature_arrays(n: int, seed: int, vocab_size: int = 32, width: int = 6):
    """numeric float32 [n, 5], tokens int64 [n, width] (right-padded with 0), labels float32 [n]."""
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(n, 5)).astype(np.float32)
    tokens = np.zeros((n, width), dtype=np.int64)
    for i in range(n):
        k = int(rng.integers(0, width + 1))
        tokens[i, :k] = rng.integers(2, vocab_size, size=k)
    labels = (rng.random(n) < 0.4).astype(np.float32)
    return numeric, tokens, labels


def batches(n_batches: int, rows: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Equal-sized ``(numeric, tokens, labels)`` training batches."""
    numeric, tokens, labels = feature_arrays(n_batches * rows, seed)
    out = []
    for b in range(n_batches):
        s = slice(b * rows, (b + 1) * rows)
        out.append((torch.from_numpy(numeric[s].copy()), torch.from_numpy(tokens[s].copy()),
                    torch.from_numpy(labels[s].copy())))
    return out


def write_model_dir(directory: Path, *, version: str = "v1", threshold: float = 0.5,
                    seed: int = 0) -> Path:
    """Write ``<directory>/<version>.pt`` with the submission's Featurizer, ChurnModel and
    save_checkpoint (a freshly initialised model: the tests compare paths, not quality)."""
    from churnsvc.checkpoint import save_checkpoint
    from churnsvc.features import Featurizer
    from churnsvc.model import ChurnModel

    recs = records(30, 2, seed=seed)
    featurizer = Featurizer(max_tokens=8, min_token_count=1).fit(recs)
    torch.manual_seed(seed)
    model = ChurnModel(n_numeric=len(NUMERIC), vocab_size=featurizer.vocab_size, embed_dim=8,
                       hidden_size=16, dropout=0.3)
    with torch.no_grad():
        model.embed.weight.mul_(3.0)  # so that token ids move the logit visibly
    directory = Path(directory)
    save_checkpoint(directory / f"{version}.pt", model=model, featurizer=featurizer,
                    threshold=threshold)
    return directory
