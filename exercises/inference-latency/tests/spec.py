"""The contract of the inference-latency exercise, shared by the grader and its tests (TRUSTED).

The grader imports this module on the host and inside the sandbox, so it may import only
torch, numpy and the standard library. It knows:

- where the functions live (ENTRY, TRITON_ENTRY, BASELINE) and how to call them (`call`);
- which inputs are graded (`correctness_cases`, `bench_cases`) and how they are made
  (`make_inputs`, a pure function of the case);
- what the right answer is (`reference`, float64 NumPy, independent of every torch
  implementation) and how close an output must be (`tolerance`, `compare`);
- helpers for the checks around it (`clone_inputs`, `inputs_equal`, `bytes_moved`).

Semantics (README.md states the same), for each row b:

    x = logits[b] as float32 (the reference: float64; bf16 and fp32 upcast exactly)
    for each DISTINCT token t >= 0 in history[b]:          # -1 is padding
        x[t] = x[t] / rp if x[t] > 0 else x[t] * rp        # repetition penalty, once
        x[t] = x[t] - pp                                   # presence penalty, once
    x[banned] = -inf
    x = x / temperature[b]
    probs[b] = softmax(x)

Special values, so that every input of the contract has one answer:

- logits may contain -inf (never NaN or +inf). -inf stays -inf through the penalties
  (-inf * rp - pp = -inf) and the temperature, and its probability is exactly 0.
- a row with no finite value left after the bans ("dead" row: everything banned or -inf)
  is NaN everywhere, as softmax of all -inf is (0/0) in torch.
- every other row is a probability distribution: NaN-free, banned / -inf tokens exactly 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

ENTRY = "logits:process_logits"                  # module:function in the submission
TRITON_ENTRY = "logits:process_logits_triton"    # optional in submissions; required in the reference
BASELINE = "baseline:process_logits_baseline"    # module:function in the starter (the exercise's copy)

INPUT_NAMES = ("logits", "history", "temperature", "repetition_penalty", "presence_penalty", "banned")

# Tolerance on probabilities, |out - ref| <= ATOL + RTOL * |ref| on finite entries.
#
# A correct float32 implementation loses accuracy in three places: rounding the penalised
# logit and x / T (relative 6e-8 of |x / T|, i.e. an absolute error of ~1e-6 in the exponent
# for |x / T| up to ~50 at T = 0.25), exp (a few ulp, also the fast exp2-based GPU versions),
# and the float32 sum of up to 128256 terms. All of these are *relative* errors of each
# probability. Measured worst relative error over the CPU cases (entries above 1e-30): 1.4e-5
# for torch's CPU softmax, 6e-6 for the Triton kernel under the interpreter (see
# tests/exercises/test_inference_latency_spec.py, which asserts the margin). RTOL = 1e-3 keeps
# a >= 50x margin over that, also for other correct orders of operations (x * (1 / T), exp2,
# a different summation order), while the cheapest wrong computations are off by much more:
# bf16 arithmetic (4e-3 relative in x, i.e. several % in p), a penalty applied per occurrence
# or in the wrong order (>= 10 %), a missed or extra penalised token (>= 30 %).
#
# ATOL only has to absorb probabilities that float32 cannot represent: exp underflows to 0
# (or to a denormal with few significant bits, or is flushed to zero on GPUs) below ~1e-38.
# Everything above that is covered by RTOL, so ATOL = 1e-12 leaves 26 orders of magnitude of
# slack for correct code and still checks the rare tokens: history tokens with negative logits
# often have p ~ 1e-9, so with a 1/V-sized atol such as 1e-7 a sign bug in their repetition
# penalty passed half of the large-vocabulary CPU cases (with 1e-12: all but one).
RTOL = 1e-3
ATOL = 1e-12
REL_FLOOR = 1e-30  # max_errors reports relative errors of reference entries above this

BLOCK_HINT = 1024  # the interpret cases' V = 1000 and 4099 leave masked tails for this block size


@dataclass(frozen=True)
class Case:
    """One graded input; the tensors are a pure function of these fields (see make_inputs)."""

    name: str                   # unique, e.g. "b257-v50257-bf16-h64"
    batch: int                  # B
    vocab: int                  # V
    history: int                # H: history columns (0 allowed: history has shape [B, 0])
    dtype: str                  # "float32" | "bfloat16"
    seed: int
    repetition_penalty: float = 1.3
    presence_penalty: float = 0.4
    banned_frac: float = 0.02   # fraction of the vocabulary banned (a few tokens are always banned)
    neginf_frac: float = 0.0    # fraction of logits that are -inf
    dead_rows: int = 0          # the last `dead_rows` rows are -inf wherever not banned: NaN rows
    all_banned: bool = False    # every token banned: every row is NaN


def _case(batch: int, vocab: int, history: int, dtype: str, seed: int, tag: str = "", **kw) -> Case:
    short = {"float32": "f32", "bfloat16": "bf16"}[dtype]
    name = f"b{batch}-v{vocab}-{short}-h{history}" + (f"-{tag}" if tag else "")
    return Case(name, batch, vocab, history, dtype, seed, **kw)


def correctness_cases(mode: str) -> list[Case]:
    """The correctness cases of a mode.

    "cpu": the submission's process_logits on CPU (the PyTorch path): batch 1, vocabularies
        with and without a tail (1000, 4099, 32000, 50257, one 128256), fp32 and bf16,
        repeated history ids, H = 0 and rows of padding only, H > V, dead rows, -inf logits,
        everything banned, other penalty values. The float64 reference of all of them
        together takes about a second.
    "interpret": process_logits_triton under TRITON_INTERPRET=1 (slow, so small): mostly
        B in {1, 3}, V in {1000, 4099} (tails of a 1024 block), fp32 and bf16, the same edge
        cases, and two LM vocabularies (32000, 50257); about 2 s together on 2 cores.
    "cuda": B in {1, 8, 64, 257} x V in {32000, 50257, 128256} x {float32, bfloat16}, plus
        the edge cases at GPU sizes.
    """
    if mode == "cpu":
        return [
            _case(1, 32000, 64, "float32", 101),
            _case(1, 50257, 256, "bfloat16", 102),
            _case(8, 50257, 128, "float32", 103, neginf_frac=0.01),
            _case(8, 128256, 256, "bfloat16", 104),
            _case(16, 32000, 512, "float32", 105, "rp2", repetition_penalty=2.0, presence_penalty=0.0),
            _case(16, 32000, 64, "bfloat16", 106, "pp1.5", repetition_penalty=1.0, presence_penalty=1.5),
            _case(3, 1000, 16, "float32", 107, "dead", dead_rows=1),
            _case(5, 4099, 32, "bfloat16", 108, "neginf-dead", neginf_frac=0.05, dead_rows=1),
            _case(4, 4099, 0, "float32", 109),
            _case(6, 1000, 1500, "float32", 110, "long"),
            _case(2, 1000, 8, "float32", 111, "allbanned", all_banned=True),
            _case(7, 2048, 40, "bfloat16", 112, banned_frac=0.3),
        ]
    if mode == "interpret":
        return [
            _case(1, 1000, 16, "float32", 201),
            _case(3, 4099, 64, "bfloat16", 202, neginf_frac=0.05),
            _case(3, 4099, 32, "float32", 203, "dead", dead_rows=1),
            _case(3, 1000, 0, "bfloat16", 204),
            _case(1, 4099, 128, "float32", 205, "rp2", repetition_penalty=2.0, presence_penalty=1.0),
            _case(3, 1000, 8, "float32", 206, "allbanned", all_banned=True),
            _case(3, 2048, 24, "float32", 207),
            _case(8, 32000, 64, "bfloat16", 208),
            _case(2, 50257, 256, "float32", 209, neginf_frac=0.01),
        ]
    if mode == "cuda":
        cases, seed = [], 300
        for batch in (1, 8, 64, 257):
            for vocab in (32000, 50257, 128256):
                for dtype in ("float32", "bfloat16"):
                    seed += 1
                    cases.append(_case(batch, vocab, 256 if batch <= 8 else 64, dtype, seed))
        return cases + [
            _case(64, 50257, 128, "bfloat16", 401, "neginf-dead", neginf_frac=0.02, dead_rows=3),
            _case(257, 32000, 0, "float32", 402),
            _case(8, 128256, 2048, "float32", 403, "long-rp2", repetition_penalty=2.0, presence_penalty=1.0),
            _case(5, 50257, 16, "bfloat16", 404, "allbanned", all_banned=True),
            _case(3, 4099, 32, "float32", 405, "dead", dead_rows=1),
            _case(1, 1000, 16, "bfloat16", 406),
        ]
    raise ValueError(f"unknown mode {mode!r}: expected 'cpu', 'interpret' or 'cuda'")


def bench_cases(device: str) -> list[Case]:
    """Latency shapes. "cpu": mid-size, the baseline takes ~10-50 ms per call on 2 cores.
    "cuda": B in {64, 257} x V in {50257, 128256} x {float32, bfloat16}, H = 128."""
    if device == "cpu":
        return [
            _case(16, 32000, 1024, "float32", 501, "bench"),
            _case(16, 50257, 1024, "bfloat16", 502, "bench"),
            _case(8, 128256, 2048, "float32", 503, "bench"),
        ]
    if device == "cuda":
        cases, seed = [], 600
        for batch in (64, 257):
            for vocab in (50257, 128256):
                for dtype in ("float32", "bfloat16"):
                    seed += 1
                    cases.append(_case(batch, vocab, 128, dtype, seed, "bench"))
        return cases
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")


def model_cases() -> list[Case]:
    """Shapes whose GPU time is modelled on a CPU grader (an H100's latency shapes, one per dtype):
    the Triton path is traced under the interpreter, on a sample of each kernel's programs."""
    return [
        _case(64, 128256, 128, "float32", 601, "bench"),
        _case(257, 50257, 128, "bfloat16", 602, "bench"),
    ]


# ------------------------------------------------------------------------------- inputs

N_PEAKS = 8  # tokens per row with boosted logits, as a language model's few likely tokens


def make_inputs(case: Case, device: str = "cpu") -> dict:
    """The inputs of `case`, generated on the CPU from torch.Generator().manual_seed(case.seed),
    then moved to `device`: the host regenerates exactly the same tensors on the CPU."""
    B, V, H = case.batch, case.vocab, case.history
    if V < N_PEAKS or B < 1 or H < 0:
        raise ValueError(f"{case.name}: need V >= {N_PEAKS}, B >= 1, H >= 0")
    g = torch.Generator().manual_seed(case.seed)
    rows = torch.arange(B)

    # Logits: a broad body plus a few peaks per row, like an LM's next-token logits.
    logits = torch.randn(B, V, generator=g) * 2.5
    # Peaks are distinct within a row (distinct residues mod N_PEAKS), so no index repeats.
    peaks = torch.randint(0, V // N_PEAKS, (B, N_PEAKS), generator=g) * N_PEAKS + torch.arange(N_PEAKS)
    boost = torch.rand(B, N_PEAKS, generator=g) * 12.0 + 4.0
    logits[rows[:, None], peaks] += boost
    logits[0, V - 1] += 10.0  # the last token (inside any kernel's tail block) is likely in row 0

    # Banned: a random fraction, plus a high-logit token, never the last token.
    banned = torch.rand(V, generator=g) < case.banned_frac
    banned[peaks[0, 1]] = True
    banned[V - 1] = False
    if case.all_banned:
        banned[:] = True

    if case.neginf_frac > 0:
        logits[torch.rand(B, V, generator=g) < case.neginf_frac] = -math.inf
    for r in range(max(0, B - case.dead_rows), B):  # dead: only banned tokens are finite
        logits[r] = torch.where(banned, logits[r], torch.tensor(-math.inf))

    # Temperatures log-uniform in [0.25, 2]; row 0 at exactly 1.
    temperature = (0.25 * 8.0 ** torch.rand(B, generator=g)).to(torch.float32)
    temperature[0] = 1.0

    # History: half peak tokens (the model repeats its likely tokens), half uniform, with
    # ~30% copies of an earlier entry (repeated ids); row lengths in [0, H], right-padded -1.
    if H > 0:
        from_peak = torch.rand(B, H, generator=g) < 0.5
        peak_pick = peaks.gather(1, torch.randint(0, N_PEAKS, (B, H), generator=g))
        raw = torch.where(from_peak, peak_pick, torch.randint(0, V, (B, H), generator=g))
        earlier = (torch.rand(B, H, generator=g) * torch.arange(H)).long()  # index < j (0 for j = 0)
        repeat = torch.rand(B, H, generator=g) < 0.3
        history = torch.where(repeat, raw.gather(1, earlier), raw)
        lengths = torch.randint(0, H + 1, (B,), generator=g)
        lengths[0] = H                       # one full row
        if B > 1:
            lengths[1] = 0                   # one row of padding only
        if B > 2:
            history[2] = peaks[2, 0]         # one token many times: penalised once
        if B > 3 and H >= 2:
            history[3, 0], history[3, 1] = 0, V - 1  # the first and the last id
            lengths[3] = max(int(lengths[3]), 2)
        history[torch.arange(H)[None, :] >= lengths[:, None]] = -1
    else:
        history = torch.empty(B, 0, dtype=torch.int64)

    return {
        "logits": logits.to(getattr(torch, case.dtype)).to(device),
        "history": history.to(torch.int64).to(device),
        "temperature": temperature.to(device),
        "repetition_penalty": float(case.repetition_penalty),
        "presence_penalty": float(case.presence_penalty),
        "banned": banned.to(device),
    }


def call(fn, inputs: dict):
    """Call a process_logits-like function: keyword arguments with the documented names."""
    return fn(**{name: inputs[name] for name in INPUT_NAMES})


def clone_inputs(inputs: dict) -> dict:
    """A deep copy (tensors cloned on their device), to check later that inputs are unchanged."""
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
        return False
    a, b = a.detach().cpu().contiguous(), b.detach().cpu().contiguous()
    if a.dtype == torch.bool:
        return torch.equal(a, b)
    return torch.equal(a.view(torch.uint8), b.view(torch.uint8))  # bitwise: -0.0, NaN payloads too


def inputs_equal(a: dict, b: dict) -> bool:
    """True when two input dicts hold bit-identical values (same keys, dtypes, shapes, devices)."""
    if set(a) != set(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and _same_tensor(x, y)):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


# ---------------------------------------------------------------------------- reference

def reference(inputs: dict) -> np.ndarray:
    """The exact answer in float64, [B, V], from the inputs (on any device; read on the CPU).

    In place on one float64 buffer: ~0.35 s and 260 MB for the largest GPU case (257 x 128256)."""
    x = inputs["logits"].detach().cpu().to(torch.float64, copy=True).numpy()  # bf16/fp32: exact
    history = inputs["history"].detach().cpu().to(torch.int64).numpy()
    temperature = inputs["temperature"].detach().cpu().to(torch.float64).numpy()
    banned = inputs["banned"].detach().cpu().to(torch.bool).numpy()
    rp, pp = float(inputs["repetition_penalty"]), float(inputs["presence_penalty"])
    B, V = x.shape

    # Each distinct (row, token) of the history once; padding (-1) is left out.
    rows, cols = np.nonzero(history >= 0)
    pairs = np.unique(rows * V + history[rows, cols])
    rows, tokens = pairs // V, pairs % V
    vals = x[rows, tokens]
    x[rows, tokens] = np.where(vals > 0, vals / rp, vals * rp) - pp  # -inf stays -inf

    x[:, banned] = -np.inf
    x /= temperature[:, None]
    m = x.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        x -= np.where(np.isneginf(m), 0.0, m)  # dead rows (max -inf) stay all -inf...
        np.exp(x, out=x)
        x /= x.sum(axis=1, keepdims=True)      # ...exp gives 0, and 0 / 0 = NaN everywhere
    return x


def tolerance(case: Case) -> tuple[float, float]:
    """(atol, rtol) for |out - ref| <= atol + rtol * |ref|; the same for every case (see RTOL)."""
    return ATOL, RTOL


def _shares_memory(output: torch.Tensor, inputs: dict) -> bool:
    try:
        return any(isinstance(v, torch.Tensor) and v.device == output.device
                   and v.untyped_storage().data_ptr() == output.untyped_storage().data_ptr()
                   and v.numel() > 0 for v in inputs.values())
    except (RuntimeError, NotImplementedError):
        return False


def compare(case: Case, inputs: dict, output, reference_out: np.ndarray) -> list[str]:
    """Problems with `output` for `case` (empty when it is right).

    The output must be a torch.Tensor (exactly), float32, of shape [B, V], on the inputs'
    device, not sharing memory with an input. NaN where the reference is NaN and nowhere
    else; +-inf likewise (the reference has none); exactly 0 where the reference is exactly
    0 (banned and -inf tokens); everything else within tolerance(case).
    """
    B, V = case.batch, case.vocab
    if type(output) is not torch.Tensor:
        return [f"{case.name}: returned {type(output).__module__}.{type(output).__qualname__}, "
                "expected a torch.Tensor"]
    problems = []
    if output.dtype != torch.float32:
        problems.append(f"{case.name}: dtype {output.dtype}, expected torch.float32")
    if tuple(output.shape) != (B, V):
        problems.append(f"{case.name}: shape {tuple(output.shape)}, expected {(B, V)}")
    device = inputs["logits"].device
    if output.device != device:
        problems.append(f"{case.name}: on {output.device}, expected {device} (the inputs' device)")
    if problems:
        return problems
    if _shares_memory(output, inputs):
        problems.append(f"{case.name}: the output shares memory with an input (must be a new tensor)")

    out = output.detach().cpu().to(torch.float64).numpy()
    ref = np.asarray(reference_out, dtype=np.float64)
    atol, rtol = tolerance(case)

    def where(mask: np.ndarray) -> str:
        b, v = np.argwhere(mask)[0]
        return f"{int(mask.sum())} entries, first [{b}, {v}]: got {out[b, v]!r}, reference {ref[b, v]!r}"

    nan_out, nan_ref = np.isnan(out), np.isnan(ref)
    if (nan_out != nan_ref).any():
        problems.append(f"{case.name}: NaN where the reference has none or the reverse: "
                        f"{where(nan_out != nan_ref)}")
    inf_out, inf_ref = np.isinf(out), np.isinf(ref)
    bad_inf = (inf_out != inf_ref) | (inf_out & inf_ref & (np.sign(out) != np.sign(ref)))
    if bad_inf.any():
        problems.append(f"{case.name}: infinities differ from the reference: {where(bad_inf)}")
    zero_ref = ref == 0.0
    bad_zero = zero_ref & (out != 0.0) & ~nan_out
    if bad_zero.any():
        problems.append(f"{case.name}: nonzero probability of a banned or -inf token: {where(bad_zero)}")
    finite = np.isfinite(out) & np.isfinite(ref) & ~zero_ref
    with np.errstate(invalid="ignore"):
        bad = finite & ~(np.abs(out - ref) <= atol + rtol * np.abs(ref))
    if bad.any():
        err = np.where(finite, np.abs(out - ref), 0.0)
        problems.append(f"{case.name}: outside |out - ref| <= {atol:g} + {rtol:g} * |ref|: {where(bad)}; "
                        f"max abs error {err.max():.3g}")
    return problems


def max_errors(output: torch.Tensor, reference_out: np.ndarray) -> tuple[float, float]:
    """(max abs error over entries finite in the reference, max relative error over entries
    above REL_FLOOR, where float32 has all its bits); for reports and the tolerance self-test."""
    out = output.detach().cpu().to(torch.float64).numpy()
    ref = np.asarray(reference_out, dtype=np.float64)
    finite = np.isfinite(ref)
    err = np.abs(out - ref)
    big = finite & (np.abs(ref) > REL_FLOOR)
    max_abs = float(err[finite].max()) if finite.any() else 0.0
    max_rel = float((err[big] / np.abs(ref[big])).max()) if big.any() else 0.0
    return max_abs, max_rel


def bytes_moved(case: Case) -> int:
    """The least memory traffic of one call: read logits, history, temperature and banned
    once, write the float32 probabilities once (for an achieved-GB/s figure)."""
    elem = {"float32": 4, "bfloat16": 2}[case.dtype]
    B, V, H = case.batch, case.vocab, case.history
    return B * V * elem + B * H * 8 + B * 4 + V * 1 + B * V * 4
