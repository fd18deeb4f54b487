"""Gradient accumulation with token-count normalisation.

A window of micro-batches must give the gradients (and loss) of the mean over every real token
of the window: the same as one batch holding all its rows, even when the micro-batches hold very
different numbers of real tokens. The submission's own accumulation_step over one batch is the
yardstick, so a loss formula that is wrong in the same way everywhere does not fail this check.
"""
import math

import torch

from trainer import accumulation_step, train

WIDTH = 12


def uneven_window(lab, seed=0):
    """Four micro-batches of the same width whose real-token counts differ a lot."""
    ranges = [(10, 12), (2, 3), (5, 8), (2, 2)]
    window = []
    for i, (lo, hi) in enumerate(ranges):
        window += lab.make_micro_batches(1, batch_size=3, min_len=lo, max_len=hi, width=WIDTH, seed=seed + i)
    counts = [lab.num_tokens([mb]) for mb in window]
    assert max(counts) >= 5 * min(counts), counts  # the test data really is uneven
    return window


def grads_after(lab, model, fn):
    model.zero_grad(set_to_none=True)
    out = fn()
    return out, lab.grads_of(model)


def assert_grads_close(a, b, rtol=1e-5, atol=1e-7):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


def test_window_gradients_equal_one_batch(lab):
    model = lab.make_model(3)
    window = uneven_window(lab)
    _, got = grads_after(lab, model, lambda: accumulation_step(model, window))
    _, want = grads_after(lab, model, lambda: accumulation_step(model, [lab.concat(window)]))
    assert_grads_close(got, want)


def test_window_loss_equals_one_batch(lab):
    model = lab.make_model(4)
    window = uneven_window(lab, seed=10)
    got, _ = grads_after(lab, model, lambda: accumulation_step(model, window))
    want, _ = grads_after(lab, model, lambda: accumulation_step(model, [lab.concat(window)]))
    assert math.isclose(got, want, rel_tol=1e-5)


def test_window_run_in_parts_equals_the_whole_window(lab):
    model = lab.make_model(5)
    window = uneven_window(lab, seed=20)

    def in_parts():
        return (accumulation_step(model, window, stop=1) + accumulation_step(model, window, start=1, stop=3)
                + accumulation_step(model, window, start=3))

    whole, want = grads_after(lab, model, lambda: accumulation_step(model, window))
    parts, got = grads_after(lab, model, in_parts)
    assert math.isclose(parts, whole, rel_tol=1e-5)
    assert_grads_close(got, want)


def test_micro_batch_without_real_tokens(lab):
    model = lab.make_model(6)
    window = uneven_window(lab, seed=30)
    empty = {"input_ids": window[1]["input_ids"].clone(), "labels": torch.full_like(window[1]["labels"], -100)}
    window[1] = empty
    loss, got = grads_after(lab, model, lambda: accumulation_step(model, window))
    want_loss, want = grads_after(lab, model, lambda: accumulation_step(model, [lab.concat(window)]))
    assert math.isfinite(loss) and math.isclose(loss, want_loss, rel_tol=1e-5)
    assert_grads_close(got, want)


def test_train_windows_equal_concatenated_batches(lab):
    # 10 micro-batches in windows of 4 (4 + 4 + 2) against the same windows concatenated into
    # single micro-batches with accum_steps=1: a constant lr, so only the accumulation differs.
    data = []
    for i in range(10):
        lo, hi = [(9, 12), (2, 3), (4, 7), (2, 2), (6, 12)][i % 5]
        data += lab.make_micro_batches(1, batch_size=2, min_len=lo, max_len=hi, width=WIDTH, seed=40 + i)
    # Plain SGD: its update is linear in the gradient, so float rounding cannot be amplified the
    # way Adam's normalisation amplifies it for gradients near zero.
    merged = [lab.concat(data[0:4]), lab.concat(data[4:8]), lab.concat(data[8:10])]
    kwargs = dict(epochs=2, base_lr=0.5, warmup_steps=0, min_lr=0.5)

    model_a = lab.make_model(7)
    hist_a = train(model_a, torch.optim.SGD(model_a.parameters(), lr=0.5), data, accum_steps=4, **kwargs)
    model_b = lab.make_model(7)
    hist_b = train(model_b, torch.optim.SGD(model_b.parameters(), lr=0.5), merged, accum_steps=1, **kwargs)

    assert [h["tokens"] for h in hist_a] == [h["tokens"] for h in hist_b] == [lab.num_tokens([m]) for m in merged] * 2
    for a, b in zip(hist_a, hist_b):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-4)
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
