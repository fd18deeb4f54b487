"""clip_and_step: the total gradient norm is clipped to the maximum, after unscaling.

The optimizer records the norm of the gradients it is about to apply at every step() call."""
import math

import torch

from trainer import clip_and_step, train


def set_grads(lab, model, norm, seed=0):
    """Give every parameter a random gradient, scaled so that their total norm is `norm`."""
    gen = torch.Generator().manual_seed(seed)
    grads = [torch.randn(p.shape, generator=gen) for p in model.parameters()]
    scale = norm / lab.grad_norm(grads)
    for p, g in zip(model.parameters(), grads):
        p.grad = g * scale
    return [p.grad.clone() for p in model.parameters()]


def test_clips_large_gradients_to_the_max_norm(lab):
    model = lab.make_model(0)
    original = set_grads(lab, model, 50.0)
    opt = lab.make_optimizer(model)
    returned = clip_and_step(model, opt, max_grad_norm=1.0)
    assert math.isclose(opt.calls[0]["grad_norm"], 1.0, rel_tol=1e-3)
    assert math.isclose(returned, 50.0, rel_tol=1e-4)
    for p, g in zip(model.parameters(), original):  # same direction, 50 times shorter
        torch.testing.assert_close(p.grad, g / 50.0, rtol=1e-3, atol=1e-7)


def test_small_gradients_are_left_alone(lab):
    model = lab.make_model(0)
    original = set_grads(lab, model, 0.3, seed=1)
    opt = lab.make_optimizer(model)
    returned = clip_and_step(model, opt, max_grad_norm=1.0)
    assert math.isclose(opt.calls[0]["grad_norm"], 0.3, rel_tol=1e-4)
    assert math.isclose(returned, 0.3, rel_tol=1e-4)
    for p, g in zip(model.parameters(), original):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-8)


def test_no_max_norm_means_no_clipping(lab):
    model = lab.make_model(0)
    set_grads(lab, model, 50.0, seed=2)
    opt = lab.make_optimizer(model)
    returned = clip_and_step(model, opt, max_grad_norm=None)
    assert math.isclose(opt.calls[0]["grad_norm"], 50.0, rel_tol=1e-4)
    assert math.isclose(returned, 50.0, rel_tol=1e-4)


def test_clips_the_unscaled_gradients(lab):
    # Gradients scaled by a GradScaler (on the CPU here): the clip applies to the true gradients.
    batch = lab.make_micro_batches(1, seed=3)
    model = lab.make_model(1)
    lab.token_mean_loss(model, batch).backward()
    true_norm = lab.grad_norm([p.grad for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.scale(lab.token_mean_loss(model, batch)).backward()
    opt = lab.make_optimizer(model)
    returned = clip_and_step(model, opt, max_grad_norm=true_norm / 2, scaler=scaler)
    assert len(opt.calls) == 1
    assert math.isclose(opt.calls[0]["grad_norm"], true_norm / 2, rel_tol=1e-3)
    assert math.isclose(returned, true_norm, rel_tol=1e-3)


def test_train_clips_every_step(lab):
    model = lab.make_model(2)
    opt = lab.make_optimizer(model)
    data = lab.make_micro_batches(6, seed=4)
    history = train(model, opt, data, epochs=2, accum_steps=2, base_lr=0.05, max_grad_norm=0.05)
    applied = [c["grad_norm"] for c in opt.calls]
    assert len(applied) == len(history) == 6
    assert all(a <= 0.05 * (1 + 1e-3) for a in applied), applied
    assert all(h["grad_norm"] > 0.05 for h in history), [h["grad_norm"] for h in history]  # it did clip
