"""The same code on a GPU: fp16 autocast with a GradScaler, clipping after unscaling, and the
scaler's state in the checkpoint. Graded only where CUDA is available."""
import math

import pytest
import torch

from trainer import accumulation_step, clip_and_step, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def held_out_loss(lab, model) -> float:
    model.eval()
    with torch.no_grad():
        loss = float(lab.token_mean_loss(model, lab.make_micro_batches(4, batch_size=4, counting=True, seed=99)))
    model.train()
    return loss


def test_fp16_forward_runs_in_fp16_with_fp32_parameters(lab):
    model = lab.make_model(0, device="cuda")
    seen = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    scaler = torch.amp.GradScaler("cuda", init_scale=256.0)
    accumulation_step(model, lab.make_micro_batches(2, seed=1), precision="fp16", scaler=scaler)
    assert seen and all(d == torch.float16 for d in seen), seen
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and p.device.type == "cuda", name
        assert p.grad is not None and p.grad.dtype == torch.float32, name


def test_fp16_gradients_are_scaled_by_the_scaler(lab):
    batches = lab.make_micro_batches(3, seed=2)
    model = lab.make_model(1, device="cuda")
    accumulation_step(model, batches, precision="fp32")
    g32 = torch.cat([g.flatten() for g in lab.grads_of(model)])
    model.zero_grad(set_to_none=True)
    scaler = torch.amp.GradScaler("cuda", init_scale=256.0)
    accumulation_step(model, batches, precision="fp16", scaler=scaler)
    g16 = torch.cat([g.flatten() for g in lab.grads_of(model)]) / 256.0
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.99
    assert math.isclose(float(g16.norm()), float(g32.norm()), rel_tol=5e-2)


def test_clips_the_unscaled_gradients_on_cuda(lab):
    batch = lab.make_micro_batches(1, seed=3)
    model = lab.make_model(2, device="cuda")
    lab.token_mean_loss(model, batch).backward()
    true_norm = lab.grad_norm([p.grad for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    scaler = torch.amp.GradScaler("cuda", init_scale=1024.0)
    scaler.scale(lab.token_mean_loss(model, batch)).backward()
    opt = lab.make_optimizer(model)
    returned = clip_and_step(model, opt, max_grad_norm=true_norm / 2, scaler=scaler)
    assert len(opt.calls) == 1
    assert math.isclose(opt.calls[0]["grad_norm"], true_norm / 2, rel_tol=1e-3)
    assert math.isclose(returned, true_norm, rel_tol=1e-3)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_train_learns_on_cuda(lab, precision):
    model = lab.make_model(0, device="cuda")
    data = lab.make_micro_batches(8, batch_size=4, counting=True, seed=1)
    before = held_out_loss(lab, model)
    history = train(model, lab.make_optimizer(model), data, epochs=4, accum_steps=2, base_lr=3e-2,
                    warmup_steps=2, max_grad_norm=1.0, precision=precision)
    after = held_out_loss(lab, model)
    assert len(history) == 16
    assert all(p.dtype == torch.float32 and p.device.type == "cuda" for p in model.parameters())
    assert after < 0.2 * before, (before, after)


def test_scaler_state_is_checkpointed(lab, tmp_path):
    # A scaler that doubles its scale after every finite step: after a resume the scale must
    # continue from the checkpoint, not restart from the fresh scaler's initial value.
    def scaler():
        return torch.amp.GradScaler("cuda", init_scale=256.0, growth_interval=1)

    data = lab.make_micro_batches(6, seed=4)
    config = dict(epochs=2, accum_steps=2, base_lr=0.01, max_grad_norm=1.0, precision="fp16")
    model = lab.make_model(3, device="cuda")
    straight_scaler = scaler()
    straight = train(model, lab.make_optimizer(model), data, scaler=straight_scaler, **config)

    path = tmp_path / "ckpt.pt"
    model = lab.make_model(3, device="cuda")
    first = train(model, lab.make_optimizer(model), data, scaler=scaler(), checkpoint_path=path, stop_after=6,
                  **config)
    model = lab.make_model(30, device="cuda")
    resumed_scaler = scaler()
    rest = train(model, lab.make_optimizer(model), data, scaler=resumed_scaler, checkpoint_path=path, **config)

    assert len(first) == 3 and len(rest) == 3 and len(straight) == 6
    assert resumed_scaler.get_scale() == straight_scaler.get_scale()
    assert all(math.isfinite(h["loss"]) for h in first + rest)
