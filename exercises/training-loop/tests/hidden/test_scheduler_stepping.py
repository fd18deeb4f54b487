"""train(): the learning rate advances once per optimizer step, partial windows included.

The expected values come from the submission's own lr_at, so this check is about when the
schedule advances, not about its formula. The optimizer records the lr of every step() call."""
import math

import pytest

from schedule import lr_at
from trainer import train


def run(lab, *, n, accum_steps, epochs, warmup_steps, min_lr=0.0, base_lr=0.05):
    model = lab.make_model(1)
    opt = lab.make_optimizer(model)
    data = lab.make_micro_batches(n, seed=2)
    history = train(model, opt, data, epochs=epochs, accum_steps=accum_steps, base_lr=base_lr,
                    warmup_steps=warmup_steps, min_lr=min_lr)
    total = epochs * math.ceil(n / accum_steps)
    want = [lr_at(s, base_lr=base_lr, warmup_steps=warmup_steps, total_steps=total, min_lr=min_lr) for s in range(total)]
    used = [call["lr"][0] for call in opt.calls]
    return used, history, want


def test_one_lr_per_optimizer_step_with_a_partial_last_window(lab):
    # 7 micro-batches in windows of 3: 3 + 3 + 1, so 3 optimizer steps per epoch, 6 in all
    used, _, want = run(lab, n=7, accum_steps=3, epochs=2, warmup_steps=2)
    assert used == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_window_longer_than_the_epoch(lab):
    # 3 micro-batches with accum_steps=5: one (partial) window, so one optimizer step, per epoch
    used, _, want = run(lab, n=3, accum_steps=5, epochs=4, warmup_steps=1, min_lr=0.001)
    assert used == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_without_accumulation(lab):
    used, _, want = run(lab, n=5, accum_steps=1, epochs=2, warmup_steps=3, min_lr=0.005)
    assert used == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_history_reports_the_lr_each_step_used(lab):
    used, history, want = run(lab, n=7, accum_steps=2, epochs=2, warmup_steps=3)
    assert [h["step"] for h in history] == list(range(len(want)))
    assert [h["lr"] for h in history] == pytest.approx(used, rel=1e-9, abs=1e-12)
