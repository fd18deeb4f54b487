"""Penalties, bans and temperature in vectorised PyTorch, then the fused softmax of the Triton
tutorial (one program per row, the whole row in one block) for the GPU path.

The preprocessing writes a float32 copy of the logits and scatters the penalised values of the
history tokens into it; the kernel then reads it once and writes the probabilities once. The
CPU path does the same preprocessing and uses torch.softmax.
"""
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only machine: the PyTorch path still works
    triton = None


def _preprocess(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    """float32 [B, V] logits after the penalties, the bans and the temperature (a new tensor).

    The rows have one spare column at the end (row stride V + 1): the -1 padding of the
    history is pointed at it, so padding never touches a real token. The returned view leaves
    that column out.
    """
    batch, vocab = logits.shape
    buf = torch.zeros(batch, vocab + 1, dtype=torch.float32, device=logits.device)
    x = buf[:, :vocab]
    x.copy_(logits)  # our own float32 copy: the caller's buffer is never written

    if history.shape[1] > 0:
        idx = torch.where(history >= 0, history, vocab)
        vals = buf.gather(1, idx)
        # Every copy of a repeated id computes the same value from the ORIGINAL logit, so
        # writing it several times still applies the penalty once. -inf stays -inf.
        vals = torch.where(vals > 0, vals / repetition_penalty, vals * repetition_penalty) - presence_penalty
        buf.scatter_(1, idx, vals)

    x.masked_fill_(banned, float("-inf"))
    x.div_(temperature.to(torch.float32)[:, None])
    return x


if triton is not None:

    @triton.jit
    def softmax_kernel(output_ptr, input_ptr, input_row_stride, output_row_stride, n_cols,
                       BLOCK_SIZE: tl.constexpr):
        # One program per row, as in the tutorial. BLOCK_SIZE is the next power of two >= n_cols,
        # so the whole row fits in one block.
        row_idx = tl.program_id(0).to(tl.int64)
        row_start_ptr = input_ptr + row_idx * input_row_stride
        col_offsets = tl.arange(0, BLOCK_SIZE)
        mask = col_offsets < n_cols
        # Lanes past the end read -inf so they add exp(-inf) = 0 to the sum.
        row = tl.load(row_start_ptr + col_offsets, mask=mask, other=-float("inf"))
        row_minus_max = row - tl.max(row, axis=0)
        # -inf entries give exp(-inf) = 0. A dead row (max = -inf) gives -inf - (-inf) = NaN
        # everywhere, which is exactly what torch.softmax returns for it.
        numerator = tl.exp(row_minus_max)
        denominator = tl.sum(numerator, axis=0)
        softmax_output = numerator / denominator
        output_row_start_ptr = output_ptr + row_idx * output_row_stride
        tl.store(output_row_start_ptr + col_offsets, softmax_output, mask=mask)


def _interpreter_on():
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def process_logits_triton(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    if triton is None:
        raise RuntimeError("process_logits_triton needs triton")
    if not logits.is_cuda and not _interpreter_on():
        raise RuntimeError("process_logits_triton needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU)")
    x = _preprocess(logits, history, temperature, repetition_penalty, presence_penalty, banned)
    n_rows, n_cols = x.shape
    out = torch.empty(n_rows, n_cols, dtype=torch.float32, device=x.device)

    BLOCK_SIZE = triton.next_power_of_2(n_cols)
    # Same heuristic as the tutorial: more warps for longer rows.
    num_warps = 4
    if BLOCK_SIZE >= 2048:
        num_warps = 8
    if BLOCK_SIZE >= 4096:
        num_warps = 16

    softmax_kernel[(n_rows,)](out, x, x.stride(0), out.stride(0), n_cols,
                              BLOCK_SIZE=BLOCK_SIZE, num_warps=num_warps)
    return out


def process_logits(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    if logits.is_cuda and triton is not None:
        return process_logits_triton(logits, history, temperature, repetition_penalty, presence_penalty, banned)
    x = _preprocess(logits, history, temperature, repetition_penalty, presence_penalty, banned)
    return torch.softmax(x, dim=-1)
