"""Penalties in PyTorch, then one fused Triton kernel per row for bans, temperature and softmax.

The kernel walks each row in whole BLOCK-sized tiles and drops the masks to keep the loads
simple, so it only covers the first V // BLOCK * BLOCK tokens: on any vocabulary that is not
a multiple of BLOCK, the tail tokens are left out of the softmax and get probability 0
(and a row shorter than BLOCK gets nothing at all). The CPU path is correct.
"""
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

BLOCK = 1024


def _penalised(logits, history, repetition_penalty, presence_penalty):
    """A float32 copy of the logits with the history penalties applied (once per distinct id)."""
    batch, vocab = logits.shape
    x = torch.zeros(batch, vocab + 1, dtype=torch.float32, device=logits.device)
    x[:, :vocab] = logits
    if history.shape[1] > 0:
        idx = torch.where(history >= 0, history, vocab)
        vals = x.gather(1, idx)
        x.scatter_(1, idx, torch.where(vals > 0, vals / repetition_penalty, vals * repetition_penalty)
                   - presence_penalty)
    return x[:, :vocab].contiguous()


def _process_logits_torch(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    x = _penalised(logits, history, repetition_penalty, presence_penalty)
    x.masked_fill_(banned, float("-inf"))
    return torch.softmax(x / temperature[:, None], dim=-1)


if triton is not None:

    @triton.jit
    def _softmax_kernel(x_ptr, banned_ptr, temperature_ptr, out_ptr, V, n_full, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        t = tl.load(temperature_ptr + row)
        m = tl.max(tl.full([BLOCK], float("-inf"), tl.float32), axis=0)
        s = tl.sum(tl.zeros([BLOCK], tl.float32), axis=0)
        for off in range(0, n_full, BLOCK):  # whole tiles only: no masks needed
            offs = off + tl.arange(0, BLOCK)
            y = tl.load(x_ptr + row * V + offs)
            y = tl.where(tl.load(banned_ptr + offs) != 0, float("-inf"), y) / t
            m_new = tl.maximum(m, tl.max(y, axis=0))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(y - m_safe), axis=0)
            m = m_new
        m_safe = tl.where(m == float("-inf"), 0.0, m)
        for off in range(0, n_full, BLOCK):
            offs = off + tl.arange(0, BLOCK)
            y = tl.load(x_ptr + row * V + offs)
            y = tl.where(tl.load(banned_ptr + offs) != 0, float("-inf"), y) / t
            tl.store(out_ptr + row * V + offs, tl.exp(y - m_safe) / s)


def process_logits_triton(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    if triton is None:
        raise RuntimeError("needs triton")
    if not logits.is_cuda and os.environ.get("TRITON_INTERPRET", "0").lower() not in ("1", "true", "yes", "on"):
        raise RuntimeError("CUDA tensors, or TRITON_INTERPRET=1 on the CPU")
    batch, vocab = logits.shape
    x = _penalised(logits, history, repetition_penalty, presence_penalty)
    out = torch.zeros(batch, vocab, dtype=torch.float32, device=logits.device)
    n_full = vocab // BLOCK * BLOCK
    _softmax_kernel[(batch,)](x, banned.contiguous().view(torch.uint8), temperature.contiguous(), out,
                              vocab, n_full, BLOCK=BLOCK, num_warps=4)
    return out


def process_logits(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    if logits.is_cuda and triton is not None:
        return process_logits_triton(logits, history, temperature, repetition_penalty, presence_penalty, banned)
    return _process_logits_torch(logits, history, temperature, repetition_penalty, presence_penalty, banned)
