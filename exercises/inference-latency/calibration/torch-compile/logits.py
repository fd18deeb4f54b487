"""Vectorised PyTorch (a history mask instead of loops) compiled with torch.compile, so that
inductor fuses the penalties, bans, temperature and softmax; no hand-written kernel. If the
compiler is not usable on the machine, it falls back to the same function run eagerly."""
import torch


def _process(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    batch, vocab = logits.shape
    x = logits.to(torch.float32)

    # hit[b, t] is True if token t appears in row b's history. -1 padding goes into a dummy
    # last column which is sliced away, and repeated ids just set the same flag again.
    hit = torch.zeros(batch, vocab + 1, dtype=torch.bool, device=logits.device)
    hit = hit.scatter(1, torch.where(history >= 0, history, vocab), True)[:, :vocab]

    penalised = torch.where(x > 0, x / repetition_penalty, x * repetition_penalty) - presence_penalty
    x = torch.where(hit, penalised, x)
    x = x.masked_fill(banned, float("-inf"))
    x = x / temperature.to(torch.float32).unsqueeze(1)
    return torch.softmax(x, dim=-1)


_compiled = torch.compile(_process, dynamic=True)
_use_compiled = True


def process_logits(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    global _use_compiled
    if _use_compiled:
        try:
            return _compiled(logits, history, temperature, repetition_penalty, presence_penalty, banned)
        except Exception:  # no C++ compiler / no triton for this device: run it eagerly instead
            _use_compiled = False
    return _process(logits, history, temperature, repetition_penalty, presence_penalty, banned)
