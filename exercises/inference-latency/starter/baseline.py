"""The logits processor in production today (GIVEN: the yardstick of the latency score).

It is correct: its results are the ones to keep. It is slow: it walks the batch and the
history in Python, reads single logits back to the host with `.item()` (on a GPU, each one
waits for the device), rebuilds the ban list on every call and every row, and launches a
handful of small kernels per row.

The grader always times this file as it is in the exercise, never a submitted copy.
"""
import torch


def process_logits_baseline(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    batch_size, vocab_size = logits.shape
    device = logits.device

    # Tokens that may never be sampled. The list is short in practice, so keep it on the host.
    banned_ids = banned.nonzero().flatten().tolist()

    probs = []
    for b in range(batch_size):
        row = logits[b].to(torch.float32).clone()

        # Repetition and presence penalties, once per distinct token the row generated.
        seen = set()
        for token in history[b].tolist():
            if token < 0 or token in seen:  # -1 pads the history
                continue
            seen.add(token)
            value = row[token].item()
            if value > 0:
                value = value / repetition_penalty
            else:
                value = value * repetition_penalty
            row[token] = value - presence_penalty

        if banned_ids:
            row[torch.tensor(banned_ids, device=device)] = float("-inf")

        row = row / temperature[b].item()
        probs.append(torch.softmax(row, dim=-1))

    return torch.stack(probs)
