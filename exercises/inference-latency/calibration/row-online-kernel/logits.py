"""Penalties, bans and temperature in vectorised PyTorch on a float32 copy, then one Triton
kernel with one program per row that streams the row in BLOCK-sized tiles: an online softmax
(running max, running sum rescaled whenever the max grows) in a first pass, then a second pass
that writes exp(x - max) / sum.

Correct on every shape (masked tails, -inf logits, dead rows), but not fast. The grid is just
B programs, so at small batch most of an H100's 132 SMs sit idle, and each program walks its
whole row twice on its own. The preprocessing is several PyTorch ops that each make a pass over
[B, V] (upcast copy, gather/scatter of the history, masked_fill, divide) before the kernel reads
the result again, so the call moves several times the least traffic. The CPU path does the same
preprocessing and then torch.softmax.
"""
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # no triton: the CPU path still works
    triton = None

BLOCK = 2048
NUM_WARPS = 4


def _prepare(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    """A new float32 [B, V] tensor: the logits after penalties, bans and temperature.

    The work buffer has one extra column per row; history padding (-1) is redirected there, so
    it can never hit a real token. Duplicate ids in a row all read the original logit and
    scatter back the same penalised value, so each distinct id is penalised exactly once.
    """
    B, V = logits.shape
    work = torch.empty(B, V + 1, dtype=torch.float32, device=logits.device)
    work[:, V] = 0.0
    x = work[:, :V]
    x.copy_(logits)  # exact upcast from bf16; the caller's tensor is only read

    if history.shape[1] > 0:
        idx = torch.where(history < 0, torch.full_like(history, V), history)
        old = torch.gather(work, 1, idx)
        new = torch.where(old > 0, old / repetition_penalty, old * repetition_penalty)
        new = new - presence_penalty  # -inf * rp - pp stays -inf
        work.scatter_(1, idx, new)

    x.masked_fill_(banned.view(1, V), float("-inf"))
    x.div_(temperature.to(device=x.device, dtype=torch.float32).view(B, 1))
    return x


if triton is not None:

    @triton.jit
    def _row_softmax_kernel(x_ptr, out_ptr, V, x_stride, out_stride, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        x_row = x_ptr + row * x_stride
        out_row = out_ptr + row * out_stride
        cols = tl.arange(0, BLOCK)

        # Pass 1: online max and sum. m_safe replaces a -inf running max by 0 so that
        # exp(-inf - m_safe) is 0 rather than exp(-inf - -inf) = NaN.
        m = tl.full((), float("-inf"), tl.float32)
        s = tl.full((), 0.0, tl.float32)
        for start in range(0, V, BLOCK):
            offs = start + cols
            y = tl.load(x_row + offs, mask=offs < V, other=float("-inf"))
            m_new = tl.maximum(m, tl.max(y, axis=0))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(y - m_safe), axis=0)
            m = m_new

        # Pass 2: normalise. A dead row (nothing finite) ends with m = -inf and s = 0; every
        # entry is then exp(-inf - 0) / 0 = 0 / 0 = NaN, as torch.softmax gives. Make it
        # explicit so it does not depend on how the division rounds.
        m_safe = tl.where(m == float("-inf"), 0.0, m)
        live = s > 0
        inv_s = tl.where(live, 1.0 / tl.where(live, s, 1.0), float("nan"))
        for start in range(0, V, BLOCK):
            offs = start + cols
            mask = offs < V
            y = tl.load(x_row + offs, mask=mask, other=float("-inf"))
            tl.store(out_row + offs, tl.exp(y - m_safe) * inv_s, mask=mask)


def _interpreting():
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def process_logits_triton(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    """The Triton path on any device: CUDA tensors, or CPU tensors under TRITON_INTERPRET=1."""
    if triton is None:
        raise RuntimeError("process_logits_triton needs the triton package")
    if not logits.is_cuda and not _interpreting():
        raise RuntimeError("process_logits_triton runs on CUDA tensors; on the CPU set "
                           "TRITON_INTERPRET=1 before importing triton")
    x = _prepare(logits, history, temperature, repetition_penalty, presence_penalty, banned)
    B, V = x.shape
    out = torch.empty(B, V, dtype=torch.float32, device=x.device)
    _row_softmax_kernel[(B,)](x, out, V, x.stride(0), out.stride(0), BLOCK=BLOCK, num_warps=NUM_WARPS)
    return out


def process_logits(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    if logits.is_cuda and triton is not None:
        return process_logits_triton(logits, history, temperature, repetition_penalty, presence_penalty, banned)
    x = _prepare(logits, history, temperature, repetition_penalty, presence_penalty, banned)
    return torch.softmax(x, dim=-1)
