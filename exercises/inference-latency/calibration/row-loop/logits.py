"""No more .item() or Python sets, but still a Python loop over the batch: each row is done
with torch ops (unique over its history, torch.where for the penalty, masked_fill, softmax)."""
import torch


def process_logits(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    batch_size, vocab_size = logits.shape
    out = torch.empty(batch_size, vocab_size, dtype=torch.float32, device=logits.device)
    temps = temperature.to(torch.float32)

    for b in range(batch_size):
        row = logits[b].to(torch.float32, copy=True)

        # distinct tokens of this row (drop the -1 padding first)
        hist = history[b]
        hist = hist[hist >= 0]
        if hist.numel() > 0:
            tokens = torch.unique(hist)
            vals = row[tokens]
            vals = torch.where(vals > 0, vals / repetition_penalty, vals * repetition_penalty)
            row[tokens] = vals - presence_penalty

        row = row.masked_fill(banned, float("-inf"))
        row = row / temps[b]
        out[b] = torch.softmax(row, dim=-1)

    return out
