"""Your submission: a fast process_logits with the results of baseline.process_logits_baseline.

Replace the body below (keep the name and the parameter names: the grader calls it with
keyword arguments). You may add modules of your own next to this file.
"""
import torch


def process_logits(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    """Turn one decoding step's logits into sampling probabilities.

    Args:
        logits: [B, V] float32 or bfloat16, on a CUDA device in production (the CPU must work
            too). May contain -inf; never NaN or +inf.
        history: [B, H] int64, the ids each row has generated so far, right-padded with -1.
            Ids repeat; H may be 0.
        temperature: [B] float32, > 0.
        repetition_penalty: Python float >= 1.
        presence_penalty: Python float >= 0.
        banned: [V] bool, True for tokens that may never be sampled.

    Returns:
        A new [B, V] float32 tensor on the logits' device; the inputs are left unchanged.

    For each row b, in this order:
        x = logits[b] in float32
        for each DISTINCT token t >= 0 in history[b]:
            x[t] = x[t] / repetition_penalty if x[t] > 0 else x[t] * repetition_penalty
            x[t] = x[t] - presence_penalty
        x[banned] = -inf
        x = x / temperature[b]
        probs[b] = softmax(x)
    Banned and -inf tokens get probability exactly 0. A row left with no finite value is NaN
    everywhere (as torch.softmax makes it).

    Optional: also define process_logits_triton(...) with the same signature if your GPU path
    is a Triton kernel; it is then also checked on the CPU under TRITON_INTERPRET=1.
    """
    raise NotImplementedError("process_logits")
