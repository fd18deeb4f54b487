"""lr_at: the documented warmup-then-cosine closed form."""
import math

import pytest

from schedule import lr_at


def closed_form(step, base_lr, warmup_steps, total_steps, min_lr):
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def test_warmup_is_linear_and_learns_from_the_first_step():
    got = [lr_at(s, base_lr=0.2, warmup_steps=4, total_steps=30) for s in range(4)]
    assert got == pytest.approx([0.05, 0.1, 0.15, 0.2], rel=1e-12)


def test_cosine_part_without_min_lr():
    base, warmup, total = 0.1, 3, 17
    got = [lr_at(s, base_lr=base, warmup_steps=warmup, total_steps=total) for s in range(warmup, total)]
    want = [closed_form(s, base, warmup, total, 0.0) for s in range(warmup, total)]
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_cosine_part_decays_towards_min_lr():
    base, warmup, total, floor = 0.05, 2, 12, 0.005
    got = [lr_at(s, base_lr=base, warmup_steps=warmup, total_steps=total, min_lr=floor) for s in range(warmup, total)]
    want = [closed_form(s, base, warmup, total, floor) for s in range(warmup, total)]
    assert got == pytest.approx(want, rel=1e-9)
    assert got[5] == pytest.approx((base + floor) / 2, rel=1e-9)  # halfway through the cosine
    assert min(got) > floor


def test_no_warmup_starts_at_base_lr():
    got = [lr_at(s, base_lr=0.3, warmup_steps=0, total_steps=9, min_lr=0.03) for s in range(9)]
    want = [closed_form(s, 0.3, 0, 9, 0.03) for s in range(9)]
    assert got[0] == pytest.approx(0.3, rel=1e-12)
    assert got == pytest.approx(want, rel=1e-9)


def test_from_total_steps_on_it_is_min_lr():
    for step in (10, 11, 25):
        assert lr_at(step, base_lr=0.1, warmup_steps=2, total_steps=10, min_lr=0.004) == pytest.approx(0.004, rel=1e-12)


def test_warmup_as_long_as_the_run():
    got = [lr_at(s, base_lr=0.1, warmup_steps=5, total_steps=5) for s in range(5)]
    assert got == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1], rel=1e-12)
