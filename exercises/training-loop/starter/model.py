"""The tiny model and the synthetic data. GIVEN: you do not need to change this file.

The tests use their own copies of these (same code), so what you hand in must work with any
model that maps ``input_ids [B, T]`` to logits ``[B, T, V]``.

A micro-batch is a dict of two int64 tensors of the same shape ``[B, T]``:

    input_ids  token ids, right-padded with PAD_ID
    labels     the target of each position (the next token), IGNORE_INDEX (-100) wherever
               there is nothing to predict: padding, and the last real token of each row

A *real token* is a position whose label is not IGNORE_INDEX. Micro-batches of one data set
may have different widths T and very different numbers of real tokens.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VOCAB", "PAD_ID", "IGNORE_INDEX", "TinyLM", "make_micro_batches"]

VOCAB = 16  # token ids 1..VOCAB-1 are real, 0 is the pad id
PAD_ID = 0
IGNORE_INDEX = -100


class TinyLM(nn.Module):
    """Next-token model (about 3,000 parameters): each position sees its own token and the
    previous one. Causal, so right-padding never changes the outputs at real positions, and
    rows never mix, so a batch's rows can be split into micro-batches freely."""

    def __init__(self, vocab_size: int = VOCAB, dim: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.mix = nn.Linear(2 * dim, dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(dim, vocab_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)  # [B, T, D]
        prev = F.pad(x[:, :-1], (0, 0, 1, 0))  # the previous token's embedding, zeros at t = 0
        h = torch.tanh(self.mix(torch.cat([x, prev], dim=-1)))
        return self.out(self.drop(h))  # [B, T, V] logits


def make_micro_batches(num: int, *, batch_size: int = 3, min_len: int = 2, max_len: int = 12,
                       width: int | None = None, seed: int = 0, counting: bool = False) -> list[dict]:
    """`num` micro-batches of right-padded sequences of random lengths in [min_len, max_len].

    T is the longest length in each micro-batch, or `width` when given. counting=True gives a
    learnable task (each token is the previous one plus one, cycling through 1..VOCAB-1);
    otherwise the tokens are random.
    """
    rng = random.Random(seed)
    batches = []
    for _ in range(num):
        lengths = [rng.randint(min_len, max_len) for _ in range(batch_size)]
        t = width if width is not None else max(lengths)
        input_ids = torch.full((batch_size, t), PAD_ID, dtype=torch.int64)
        labels = torch.full((batch_size, t), IGNORE_INDEX, dtype=torch.int64)
        for row, length in enumerate(lengths):
            if counting:
                start = rng.randint(1, VOCAB - 1)
                seq = [(start - 1 + i) % (VOCAB - 1) + 1 for i in range(length)]
            else:
                seq = [rng.randint(1, VOCAB - 1) for _ in range(length)]
            input_ids[row, :length] = torch.tensor(seq)
            labels[row, : length - 1] = torch.tensor(seq[1:], dtype=torch.int64)
        batches.append({"input_ids": input_ids, "labels": labels})
    return batches


if __name__ == "__main__":  # a quick look at the data
    mb = make_micro_batches(1, seed=0, counting=True)[0]
    print(mb["input_ids"])
    print(mb["labels"])
    print(TinyLM()(mb["input_ids"]).shape, sum(p.numel() for p in TinyLM().parameters()), "parameters")
