"""The churn classifier: a small MLP over the numeric features and a bag of ticket tokens."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .features import PAD_ID, FeatureBatch


class ChurnModel(nn.Module):
    """Maps ``numeric`` float32 [B, n_numeric] and ``tokens`` int64 [B, T] to logits [B]."""

    def __init__(self, n_numeric: int, vocab_size: int, embed_dim: int = 16,
                 hidden_size: int = 32, dropout: float = 0.2):
        super().__init__()
        self.config = {"n_numeric": n_numeric, "vocab_size": vocab_size, "embed_dim": embed_dim,
                       "hidden_size": hidden_size, "dropout": dropout}
        self.embed = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=PAD_ID)
        self.hidden = nn.Linear(n_numeric + embed_dim, hidden_size)
        self.out = nn.Linear(hidden_size, 1)
        self.dropout = dropout

    def forward(self, numeric: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        text = self.embed(tokens)
        h = F.relu(self.hidden(torch.cat([numeric, text], dim=1)))
        h = F.dropout(h, p=self.dropout, training=self.training)
        return self.out(h).squeeze(-1)


def to_tensors(batch: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(batch.numeric), torch.from_numpy(batch.tokens)
