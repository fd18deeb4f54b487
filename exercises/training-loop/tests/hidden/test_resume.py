"""Stop (or kill), then resume in a fresh process state: the result is bitwise the same as one
uninterrupted run, on the CPU.

A fresh process state is simulated with new model and optimizer objects (the model initialised
differently), and the global random generators seeded differently, before each resumed call.
Data: 7 micro-batches in windows of 2 (2 + 2 + 2 + 1): 4 optimizer steps and 7 micro-batches
per epoch, 2 epochs."""
import random

import pytest
import torch

from trainer import train

N_MICRO = 7
CONFIG = dict(epochs=2, accum_steps=2, base_lr=0.03, warmup_steps=2, min_lr=0.001, max_grad_norm=0.5)


def data_for(lab):
    return lab.make_micro_batches(N_MICRO, seed=11)


def straight(lab, *, dropout=0.0, **overrides):
    torch.manual_seed(1234)
    model = lab.make_model(5, dropout=dropout)
    history = train(model, lab.make_optimizer(model), data_for(lab), **{**CONFIG, **overrides})
    return model, history


def fresh_process(lab, attempt, dropout):
    """New objects and different global random state, as in a restarted process."""
    torch.manual_seed(9000 + attempt)
    random.seed(9000 + attempt)
    model = lab.make_model(50 + attempt, dropout=dropout)
    return model, lab.make_optimizer(model)


def interrupted(lab, path, stops, *, dropout=0.0, **overrides):
    """Run with stop_after=each of `stops` in turn, each time in a fresh process, then to the end."""
    torch.manual_seed(1234)  # the first call starts like the straight run
    model = lab.make_model(5, dropout=dropout)
    opt = lab.make_optimizer(model)
    history = []
    for attempt, stop in enumerate([*stops, None]):
        if attempt:
            model, opt = fresh_process(lab, attempt, dropout)
        history += train(model, opt, data_for(lab), checkpoint_path=path, stop_after=stop, **{**CONFIG, **overrides})
    return model, history


def assert_bitwise_equal(run_a, run_b):
    model_a, history_a = run_a
    model_b, history_b = run_b
    assert history_b == history_a
    for (name, p), q in zip(model_a.named_parameters(), model_b.parameters()):
        assert torch.equal(p, q), name


def test_resume_at_a_window_boundary(lab, tmp_path):
    # stop after 4 micro-batches: the end of the second window of epoch 0
    assert_bitwise_equal(straight(lab), interrupted(lab, tmp_path / "ckpt.pt", [4]))


def test_resume_mid_window(lab, tmp_path):
    # stop after 5 micro-batches: the first half of the third window
    assert_bitwise_equal(straight(lab), interrupted(lab, tmp_path / "ckpt.pt", [5]))


def test_resume_in_the_second_epoch(lab, tmp_path):
    # stop after 9 micro-batches: epoch 1, after its first window (epoch 0 ended with a partial window)
    assert_bitwise_equal(straight(lab), interrupted(lab, tmp_path / "ckpt.pt", [9]))


def test_resume_restores_the_random_state(lab, tmp_path):
    # dropout draws from torch's global generator
    assert_bitwise_equal(straight(lab, dropout=0.2), interrupted(lab, tmp_path / "ckpt.pt", [4], dropout=0.2))


def test_resume_mid_window_with_dropout_in_bf16(lab, tmp_path):
    # stop after 12 micro-batches: epoch 1, in the middle of its third window
    run_a = straight(lab, dropout=0.2, precision="bf16")
    run_b = interrupted(lab, tmp_path / "ckpt.pt", [12], dropout=0.2, precision="bf16")
    assert_bitwise_equal(run_a, run_b)


def test_resume_twice(lab, tmp_path):
    assert_bitwise_equal(straight(lab), interrupted(lab, tmp_path / "ckpt.pt", [3, 10]))


def test_resume_after_a_kill_from_the_last_periodic_checkpoint(lab, tmp_path):
    # checkpoints every 2 optimizer steps; the process dies at its 6th optimizer step, so the
    # run resumes from the checkpoint after step 4 (the end of epoch 0)
    path = tmp_path / "ckpt.pt"
    model_a, history_a = straight(lab, checkpoint_every=2)

    torch.manual_seed(1234)
    model = lab.make_model(5)
    opt = lab.make_optimizer(model, kill_at=5)
    with pytest.raises(lab.Killed):
        train(model, opt, data_for(lab), checkpoint_path=path, checkpoint_every=2, **CONFIG)
    model, opt = fresh_process(lab, 1, 0.0)
    history_b = train(model, opt, data_for(lab), checkpoint_path=path, checkpoint_every=2, **CONFIG)
    assert_bitwise_equal((model_a, history_a[4:]), (model, history_b))
