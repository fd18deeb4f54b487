"""The warmup-then-cosine learning-rate schedule, in closed form."""
from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(step: int, *, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate of optimizer step ``step`` (0-based).

    Warmup: ``base_lr * (step + 1) / warmup_steps`` for ``step < warmup_steps``, so the first
    step already learns and the last warmup step uses ``base_lr``. Then a half cosine from
    ``base_lr`` at ``step == warmup_steps`` towards ``min_lr`` at ``step == total_steps``;
    ``min_lr`` from ``total_steps`` on.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, "
                         f"got {warmup_steps=} {total_steps=}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
