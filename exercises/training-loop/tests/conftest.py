"""Shared fixtures: the tiny model, synthetic padded micro-batches and a recording optimizer.

These are the tests' own copies of what the starter's model.py gives the candidate, so the
tests never depend on a submission's copy of that file. Everything is tiny and CPU-first:
a model of about 3,000 parameters and micro-batches of a few short sequences.
"""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 16  # token ids 1..VOCAB-1 are real, 0 is the pad id
PAD_ID = 0
IGNORE_INDEX = -100

# The model is tiny: intra-op threads only add overhead (and scheduling noise on a shared
# 2-CPU sandbox), so every test runs torch on one thread.
torch.set_num_threads(1)


class TinyLM(nn.Module):
    """Next-token model: each position sees its own token and the previous one (causal, so
    right-padding never changes the outputs at real positions; no cross-sequence mixing)."""

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


def make_model(seed: int = 0, *, dropout: float = 0.0, device: str = "cpu") -> TinyLM:
    """A TinyLM initialised from `seed`, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyLM(dropout=dropout)
    return model.to(device)


def make_micro_batches(num: int, *, batch_size: int = 3, min_len: int = 2, max_len: int = 12,
                       width: int | None = None, seed: int = 0, counting: bool = False) -> list[dict]:
    """`num` micro-batches of right-padded sequences of random lengths in [min_len, max_len].

    input_ids: int64 [B, T], PAD_ID at padding. labels: int64 [B, T], the next token at every
    real position but the last, IGNORE_INDEX elsewhere. T is the longest length in the
    micro-batch, or `width` when given. counting=True gives a learnable task (each token is the
    previous one plus one, cycling through 1..VOCAB-1); otherwise the tokens are random.
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


def num_tokens(micro_batches) -> int:
    return int(sum((mb["labels"] != IGNORE_INDEX).sum() for mb in micro_batches))


def concat(micro_batches) -> dict:
    """One micro-batch holding the rows of all of them (they must have the same width)."""
    return {key: torch.cat([mb[key] for mb in micro_batches]) for key in ("input_ids", "labels")}


def token_mean_loss(model, micro_batches) -> torch.Tensor:
    """The trusted loss: cross-entropy averaged over every real token of all micro-batches (fp32)."""
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for mb in micro_batches:
        logits = model(mb["input_ids"].to(device)).float()
        labels = mb["labels"].to(device)
        total = total + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                        ignore_index=IGNORE_INDEX, reduction="sum")
        count += int((labels != IGNORE_INDEX).sum())
    return total / count


def grads_of(model) -> list[torch.Tensor]:
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def grad_norm(tensors) -> float:
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.detach().float())
                                                       for t in tensors])))


class Killed(BaseException):
    """A simulated hard kill (not an Exception, so `except Exception` does not swallow it)."""


class RecordingAdamW(torch.optim.AdamW):
    """AdamW that records, at every step() call, each param group's lr and the gradient norm
    it is about to apply. With kill_at=k, the (k+1)-th step() call raises Killed before
    changing anything (a process killed there)."""

    def __init__(self, params, *, kill_at: int | None = None, **kwargs) -> None:
        kwargs.setdefault("lr", 1e-2)
        super().__init__(params, **kwargs)
        self.calls: list[dict] = []
        self.kill_at = kill_at

    def step(self, closure=None):
        if self.kill_at is not None and len(self.calls) >= self.kill_at:
            raise Killed(f"killed at optimizer step {len(self.calls)}")
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.calls.append({"lr": [float(group["lr"]) for group in self.param_groups],
                           "grad_norm": grad_norm(grads) if grads else 0.0})
        return super().step(closure)


def make_optimizer(model, **kwargs) -> RecordingAdamW:
    kwargs.setdefault("weight_decay", 0.01)
    return RecordingAdamW(model.parameters(), **kwargs)


class Lab:
    """The helpers above, handed to tests by the `lab` fixture."""

    VOCAB = VOCAB
    PAD_ID = PAD_ID
    IGNORE_INDEX = IGNORE_INDEX
    TinyLM = TinyLM
    Killed = Killed
    RecordingAdamW = RecordingAdamW
    make_model = staticmethod(make_model)
    make_micro_batches = staticmethod(make_micro_batches)
    make_optimizer = staticmethod(make_optimizer)
    num_tokens = staticmethod(num_tokens)
    concat = staticmethod(concat)
    token_mean_loss = staticmethod(token_mean_loss)
    grads_of = staticmethod(grads_of)
    grad_norm = staticmethod(grad_norm)


@pytest.fixture
def lab() -> type[Lab]:
    return Lab
