"""evaluate_lm streams: it keeps nothing of the size of a batch's logits from earlier
batches, so its memory does not grow with the number of batches."""
import tracemalloc

import torch
from torch import nn

from _eval_fixed import held_bytes
from evaluate import evaluate_lm

VOCAB, BATCH, LENGTH, BATCHES = 1024, 2, 8, 10
LOGITS_BYTES = VOCAB * BATCH * LENGTH * 4


class MeteredLM(nn.Module):
    """Records, at every forward call, the bytes held in large tensors and the traced heap."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(60)
        self.embed = nn.Embedding(64, VOCAB)
        self.held: list[int] = []

    def forward(self, input_ids):
        self.held.append(held_bytes(LOGITS_BYTES // 4))
        return self.embed(input_ids)


def test_lm_memory_does_not_grow_with_batches():
    gen = torch.Generator().manual_seed(60)
    batches = [{"input_ids": torch.randint(0, 64, (BATCH, LENGTH), generator=gen),
                "labels": torch.randint(0, VOCAB, (BATCH, LENGTH), generator=gen),
                "attention_mask": torch.ones(BATCH, LENGTH, dtype=torch.int64)} for _ in range(BATCHES)]
    model = MeteredLM().eval()
    tracemalloc.start()
    try:
        evaluate_lm(model, batches)
    finally:
        tracemalloc.stop()
    assert len(model.held) == BATCHES
    # From the second call on, the previous batch's temporaries (logits, log-probabilities, in
    # any precision) may still be alive, the same amount at every call. Keeping something of
    # logits size from every batch grows by at least one batch's logits per call.
    growth = max(model.held[1:]) - model.held[1]
    assert growth <= 2 * LOGITS_BYTES, [round((h - model.held[0]) / LOGITS_BYTES, 1) for h in model.held]
