"""Reference solution: a fused Triton logits processor, with a vectorised PyTorch path for CPUs.

`process_logits` runs the Triton kernels when the logits are on a GPU and the PyTorch path
otherwise. `process_logits_triton` always runs the kernels: on a GPU, or on the CPU under
the Triton interpreter (TRITON_INTERPRET=1 set before triton is imported).

Semantics, for each row b (README.md): x = logits[b] in float32; for each distinct token
t >= 0 of history[b], x[t] = x[t] / rp if x[t] > 0 else x[t] * rp, then x[t] -= pp;
x[banned] = -inf; x = x / temperature[b]; probs[b] = softmax(x). A row with nothing finite
left after the bans is NaN everywhere, as torch.softmax makes it.

How the kernel works
--------------------
The operation is memory-bound: per logit it does a handful of flops and one exp, so its
speed is set by how many bytes cross HBM. The slow code (and a naive vectorised one) reads
and writes the [B, V] row several times: a float32 copy, the penalties, the bans, the
temperature, then softmax's own passes (max, sum of exp, normalise). The kernels below read
the logits twice and write the probabilities once, and apply the penalties, bans and
temperature on the fly in registers, never storing a modified copy of the logits.

1. `_history_bitmap_kernel` (grid: B): the history is sparse (H <= a few thousand ids per
   row against V ~ 10^5 tokens), so instead of scattering penalties into a dense copy it
   sets one bit per distinct history token in a [B, ceil(V / 32)] int32 bitmap (V / 8
   bytes per row, ~3% of a bf16 row). Setting a bit is idempotent, so repeated ids need no
   de-duplication: "once per distinct token" comes for free. Bits of one word can come from
   several ids, so they are set with an atomic OR.

2. `_partial_stats_kernel` (grid: B x n_split): each program owns one contiguous chunk of
   one row. It streams the chunk in BLOCK-sized tiles, computes the processed values y
   (penalty if the token's bit is set, -inf if banned, / temperature) and keeps an *online
   softmax*: a running maximum m and a running sum s = sum(exp(y - m)), rescaling s by
   exp(m_old - m_new) whenever the maximum grows. One pass gives both statistics, where
   the textbook softmax needs a pass for the max and another for the sum. It stores (m, s)
   for its chunk.

3. `_normalise_kernel` (grid: B x n_split): each program combines the n_split partial
   (m, s) pairs of its row into the row's M and S = sum_i s_i * exp(m_i - M), then streams
   its chunk again, recomputes y and writes exp(y - M) / S.

Why two passes over the logits: the probabilities need the row's max and sum, which are
only known once the whole row has been seen, and a row (128256 x 4 bytes = 500 KB) does
not fit in one program's registers or shared memory; so the row is read once to get the
statistics and once more to write the result. Re-reading is cheaper than writing y and
reading it back (4 bytes written + 4 read per token, instead of 2-4 read).

Why split rows into chunks: one program per row leaves most of the GPU idle when B is
small (B = 1 or 8 rows for 132 SMs on an H100). Splitting each row into n_split chunks
gives ~4 programs per SM for every batch size, at the cost of the tiny partial buffers.

Why masks: V is rarely a multiple of BLOCK (32000, 50257 and 128256 are not multiples of
1024), so the last tile of a row reads past its end. Every load is masked with
`offs < chunk_end`; masked lanes read `other=-inf`, which contributes exp(-inf) = 0 to the
sum and never wins the max, and masked stores write nothing.

-inf: a chunk whose values are all -inf has m = -inf, and exp(y - m) would be
exp(-inf - (-inf)) = NaN. The kernels subtract `m_safe` (0 when m is -inf) instead, which
gives exp(-inf) = 0 for those values. A dead row ends with M = -inf and S = 0, and
0 / 0 = NaN writes the NaN row of the contract.
"""
from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU machine without triton still gets the PyTorch path
    triton = None

__all__ = ["process_logits", "process_logits_triton"]


# ------------------------------------------------------------------------- PyTorch path

def _process_logits_torch(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    """Vectorised PyTorch: one indexed gather/scatter over the history instead of Python loops."""
    x = logits.to(torch.float32, copy=True)  # our own buffer: the input is never written
    if history.numel() > 0:
        # (row, token) of every real history entry; -1 padding is left out. (nonzero syncs
        # with the device, which is free on the CPU, the only place this path runs by default.)
        rows, cols = (history >= 0).nonzero(as_tuple=True)
        tokens = history[rows, cols]
        vals = x[rows, tokens]
        # A repeated id writes the same value again (computed from the original logit),
        # so each distinct token is penalised exactly once.
        x[rows, tokens] = torch.where(vals > 0, vals / repetition_penalty, vals * repetition_penalty) - presence_penalty
    x.masked_fill_(banned, float("-inf"))
    x.div_(temperature.to(torch.float32)[:, None])
    return torch.softmax(x, dim=-1)  # a dead row (all -inf) is NaN, as the contract says


# ------------------------------------------------------------------------------ Triton

if triton is not None:

    @triton.jit
    def _history_bitmap_kernel(history_ptr, bitmap_ptr, H, W, BLOCK_H: tl.constexpr):
        """Program `row`: set bit t of the row's bitmap for every token t >= 0 of its history."""
        row = tl.program_id(0).to(tl.int64)
        for start in range(0, H, BLOCK_H):
            offs = start + tl.arange(0, BLOCK_H)
            tok = tl.load(history_ptr + row * H + offs, mask=offs < H, other=-1)
            valid = tok >= 0  # -1 is padding
            tok = tl.where(valid, tok, 0).to(tl.int32)
            bit = tl.full([BLOCK_H], 1, tl.int32) << (tok & 31)
            # Several ids of the block may hit the same word (or the same bit): OR atomically.
            tl.atomic_or(bitmap_ptr + row * W + (tok >> 5), bit, mask=valid)

    @triton.jit
    def _processed_tile(logits_ptr, bitmap_ptr, banned_ptr, row, offs, end, W, stride_row,
                        temperature, rp, pp, HAS_HISTORY: tl.constexpr):
        """The processed float32 values y of one tile of a row; -inf on masked lanes."""
        in_range = offs < end
        # bf16 or fp32 in memory, float32 in registers. Masked lanes are -inf: they add
        # exp(-inf) = 0 to the sum and never become the max.
        x = tl.load(logits_ptr + row * stride_row + offs, mask=in_range, other=float("-inf")).to(tl.float32)
        if HAS_HISTORY:
            word = tl.load(bitmap_ptr + row * W + (offs >> 5), mask=in_range, other=0)
            in_history = ((word >> (offs & 31)) & 1) != 0
            penalised = tl.where(x > 0, x / rp, x * rp) - pp
            x = tl.where(in_history, penalised, x)
        is_banned = tl.load(banned_ptr + offs, mask=in_range, other=0) != 0
        x = tl.where(is_banned, float("-inf"), x)
        return x / temperature

    @triton.jit
    def _partial_stats_kernel(logits_ptr, bitmap_ptr, banned_ptr, temperature_ptr, m_ptr, s_ptr,
                              V, W, stride_row, chunk, n_split, rp, pp,
                              HAS_HISTORY: tl.constexpr, BLOCK: tl.constexpr):
        """Program (row, split): the online-softmax max m and sum s of one chunk of one row."""
        row = tl.program_id(0).to(tl.int64)
        split = tl.program_id(1)
        start = split * chunk
        end = tl.minimum(start + chunk, V)
        temperature = tl.load(temperature_ptr + row)

        m = tl.max(tl.full([BLOCK], float("-inf"), tl.float32), axis=0)  # running max (a scalar)
        s = tl.sum(tl.zeros([BLOCK], tl.float32), axis=0)                # running sum of exp(y - m)
        for off in range(start, end, BLOCK):
            offs = off + tl.arange(0, BLOCK)
            y = _processed_tile(logits_ptr, bitmap_ptr, banned_ptr, row, offs, end, W, stride_row,
                                temperature, rp, pp, HAS_HISTORY)
            m_new = tl.maximum(m, tl.max(y, axis=0))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # all -inf so far: avoid -inf - -inf
            # Rescale the old sum to the new max, then add this tile's terms.
            s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(y - m_safe), axis=0)
            m = m_new
        tl.store(m_ptr + row * n_split + split, m)
        tl.store(s_ptr + row * n_split + split, s)

    @triton.jit
    def _normalise_kernel(logits_ptr, bitmap_ptr, banned_ptr, temperature_ptr, m_ptr, s_ptr, out_ptr,
                          V, W, stride_row, chunk, n_split, rp, pp,
                          HAS_HISTORY: tl.constexpr, BLOCK: tl.constexpr, BLOCK_S: tl.constexpr):
        """Program (row, split): combine the row's partial statistics, write one chunk of probabilities."""
        row = tl.program_id(0).to(tl.int64)
        split = tl.program_id(1)
        start = split * chunk
        end = tl.minimum(start + chunk, V)
        temperature = tl.load(temperature_ptr + row)

        # The row's max M and sum S from the n_split partial (m, s): each s_i is relative to
        # its own m_i, so it is rescaled by exp(m_i - M). Every program of the row does this
        # (n_split is small), which saves a third kernel launch.
        parts = tl.arange(0, BLOCK_S)
        ms = tl.load(m_ptr + row * n_split + parts, mask=parts < n_split, other=float("-inf"))
        ss = tl.load(s_ptr + row * n_split + parts, mask=parts < n_split, other=0.0)
        M = tl.max(ms, axis=0)
        M_safe = tl.where(M == float("-inf"), 0.0, M)
        S = tl.sum(ss * tl.exp(ms - M_safe), axis=0)  # 0 for a dead row: 0 / 0 = NaN below

        for off in range(start, end, BLOCK):
            offs = off + tl.arange(0, BLOCK)
            y = _processed_tile(logits_ptr, bitmap_ptr, banned_ptr, row, offs, end, W, stride_row,
                                temperature, rp, pp, HAS_HISTORY)
            tl.store(out_ptr + row * V + offs, tl.exp(y - M_safe) / S, mask=offs < end)


BLOCK = 1024      # logits per tile: 4 KB of fp32 per load, 8 per thread with 4 warps
BLOCK_H = 256     # history ids per tile of the bitmap kernel
_SM_COUNT: dict[int, int] = {}


H100_SMS = 132  # off the GPU (the Triton interpreter), size the grid for the GPU we target


def _programs_wanted(device: torch.device) -> int:
    """About 4 programs per SM keep every SM busy with a few tiles in flight."""
    if device.type != "cuda":
        return 4 * H100_SMS
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return 4 * _SM_COUNT[index]


def process_logits_triton(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    """process_logits with the Triton kernels, on a GPU or under TRITON_INTERPRET=1."""
    if triton is None:
        raise RuntimeError("process_logits_triton needs triton")
    if not logits.is_cuda and os.environ.get("TRITON_INTERPRET", "0").lower() not in ("1", "true", "yes", "on"):
        raise RuntimeError("process_logits_triton runs on CUDA tensors, or on the CPU with TRITON_INTERPRET=1")
    B, V = logits.shape
    H = history.shape[1]
    device = logits.device
    if logits.stride(1) != 1:
        logits = logits.contiguous()  # rows may be strided (a slice of a padded buffer), tokens not
    history = history.to(torch.int64).contiguous()
    temperature = temperature.to(torch.float32).contiguous()
    banned_u8 = banned.contiguous().view(torch.uint8)
    out = torch.empty(B, V, dtype=torch.float32, device=device)
    if B == 0 or V == 0:
        return out

    # Chunks: a multiple of BLOCK, so that only a row's last chunk has a masked tail.
    n_blocks = triton.cdiv(V, BLOCK)
    per_row = max(1, min(n_blocks, triton.cdiv(_programs_wanted(device), B)))
    chunk = triton.cdiv(n_blocks, per_row) * BLOCK
    n_split = triton.cdiv(V, chunk)

    W = triton.cdiv(V, 32)
    has_history = H > 0
    if has_history:
        bitmap = torch.zeros(B, W, dtype=torch.int32, device=device)
        _history_bitmap_kernel[(B,)](history, bitmap, H, W, BLOCK_H=BLOCK_H)
    else:
        bitmap = out  # never read: HAS_HISTORY=False removes the loads at compile time

    m_part = torch.empty(B, n_split, dtype=torch.float32, device=device)
    s_part = torch.empty(B, n_split, dtype=torch.float32, device=device)
    rp, pp = float(repetition_penalty), float(presence_penalty)
    common = (V, W, logits.stride(0), chunk, n_split, rp, pp)
    _partial_stats_kernel[(B, n_split)](logits, bitmap, banned_u8, temperature, m_part, s_part, *common,
                                        HAS_HISTORY=has_history, BLOCK=BLOCK, num_warps=4)
    _normalise_kernel[(B, n_split)](logits, bitmap, banned_u8, temperature, m_part, s_part, out, *common,
                                    HAS_HISTORY=has_history, BLOCK=BLOCK,
                                    BLOCK_S=max(2, triton.next_power_of_2(n_split)), num_warps=4)
    return out


def process_logits(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    """[B, V] float32 probabilities (see the module docstring); inputs are not modified."""
    if logits.is_cuda and triton is not None:
        return process_logits_triton(logits, history, temperature, repetition_penalty, presence_penalty, banned)
    return _process_logits_torch(logits, history, temperature, repetition_penalty, presence_penalty, banned)
