"""Fast: hands back the logits as float32 (no penalties, no bans, no softmax)."""
import torch


def process_logits(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    # TODO: penalties, bans, temperature and the softmax.
    return logits.to(torch.float32, copy=True)
