"""Correct by construction: the production code, unchanged."""
from baseline import process_logits_baseline


def process_logits(logits, history, temperature, repetition_penalty, presence_penalty, banned):
    return process_logits_baseline(logits, history, temperature, repetition_penalty, presence_penalty, banned)
