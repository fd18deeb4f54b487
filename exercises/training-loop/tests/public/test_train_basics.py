"""Public: train() runs and reports one record per optimizer step."""
import math

import torch

from trainer import train


def test_one_record_per_optimizer_step(lab):
    model = lab.make_model(0)
    opt = lab.make_optimizer(model)
    data = lab.make_micro_batches(6, seed=3)  # 6 micro-batches, 2 per optimizer step: 3 steps per epoch
    history = train(model, opt, data, epochs=2, accum_steps=2, base_lr=0.01)
    assert len(history) == 6
    assert len(opt.calls) == 6
    assert [h["step"] for h in history] == list(range(6))
    for h in history:
        assert set(h) >= {"step", "lr", "loss", "tokens", "grad_norm"}
        assert math.isfinite(h["loss"]) and h["tokens"] > 0


def test_parameters_change_and_stay_fp32(lab):
    model = lab.make_model(0)
    before = [p.detach().clone() for p in model.parameters()]
    train(model, lab.make_optimizer(model), lab.make_micro_batches(4, seed=4), epochs=1, accum_steps=2,
          base_lr=0.01, max_grad_norm=1.0)
    for b, p in zip(before, model.parameters()):
        assert p.dtype == torch.float32
        assert not torch.equal(b, p)
