"""Mixed precision on the CPU: bf16 autocast for the forward pass, fp32 parameters and gradients."""
import math

import torch

from trainer import accumulation_step, train


def watch_dtypes(model):
    """Record the dtype of every Linear layer's output."""
    seen = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def test_bf16_forward_runs_in_bf16(lab):
    model = lab.make_model(0)
    seen = watch_dtypes(model)
    accumulation_step(model, lab.make_micro_batches(2, seed=1), precision="bf16")
    assert seen and all(d == torch.bfloat16 for d in seen), seen


def test_bf16_keeps_fp32_parameters_and_gradients(lab):
    model = lab.make_model(0)
    accumulation_step(model, lab.make_micro_batches(2, seed=2), precision="bf16")
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32, name
        assert p.grad is not None and p.grad.dtype == torch.float32, name


def test_fp32_runs_without_autocast(lab):
    model = lab.make_model(0)
    seen = watch_dtypes(model)
    accumulation_step(model, lab.make_micro_batches(2, seed=3), precision="fp32")
    assert seen and all(d == torch.float32 for d in seen), seen


def test_bf16_loss_and_gradients_are_close_to_fp32(lab):
    batches = lab.make_micro_batches(3, seed=4)
    model = lab.make_model(1)
    loss32 = accumulation_step(model, batches, precision="fp32")
    g32 = torch.cat([g.flatten() for g in lab.grads_of(model)])
    model.zero_grad(set_to_none=True)
    loss16 = accumulation_step(model, batches, precision="bf16")
    g16 = torch.cat([g.flatten() for g in lab.grads_of(model)])
    assert math.isclose(loss16, loss32, rel_tol=2e-2)
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.99
    assert math.isclose(float(g16.norm()), float(g32.norm()), rel_tol=5e-2)


def test_train_uses_bf16_when_asked(lab):
    model = lab.make_model(2)
    seen = watch_dtypes(model)
    train(model, lab.make_optimizer(model), lab.make_micro_batches(4, seed=5), epochs=1, accum_steps=2,
          base_lr=0.01, precision="bf16")
    assert seen and all(d == torch.bfloat16 for d in seen), seen
    assert all(p.dtype == torch.float32 for p in model.parameters())
