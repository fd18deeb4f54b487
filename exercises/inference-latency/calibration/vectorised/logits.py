"""Vectorised PyTorch: a dense history mask instead of Python loops, no custom kernel."""
import torch


def process_logits(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    batch, vocab = logits.shape
    x = logits.to(torch.float32)

    # in_history[b, t]: token t occurs in row b's history. Padding (-1) goes to a spare
    # column that is cut off, so it never marks a real token.
    in_history = torch.zeros(batch, vocab + 1, dtype=torch.bool, device=logits.device)
    in_history.scatter_(1, torch.where(history >= 0, history, vocab), True)
    in_history = in_history[:, :vocab]

    penalised = torch.where(x > 0, x / repetition_penalty, x * repetition_penalty) - presence_penalty
    x = torch.where(in_history, penalised, x)
    x = x.masked_fill(banned, float("-inf"))
    x = x / temperature[:, None]
    return torch.softmax(x, dim=-1)
