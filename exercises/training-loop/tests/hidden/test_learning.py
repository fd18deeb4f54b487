"""train() learns a learnable synthetic task (each token is the previous one plus one).

Progress is measured with the tests' own loss on held-out micro-batches, before and after. The
learning rate is constant here (min_lr = base_lr, no warmup): the schedule has checks of its own."""
import torch

from trainer import train


def held_out_loss(lab, model) -> float:
    model.eval()
    with torch.no_grad():
        loss = float(lab.token_mean_loss(model, lab.make_micro_batches(4, batch_size=4, counting=True, seed=99)))
    model.train()
    return loss


def check_learns(lab, **kwargs):
    model = lab.make_model(0)
    data = lab.make_micro_batches(8, batch_size=4, counting=True, seed=1)
    before = held_out_loss(lab, model)
    train(model, lab.make_optimizer(model), data, epochs=4, base_lr=2e-2, warmup_steps=0, min_lr=2e-2,
          max_grad_norm=1.0, **kwargs)
    after = held_out_loss(lab, model)
    assert after < 0.2 * before, (before, after)


def test_loss_decreases_with_accumulation(lab):
    check_learns(lab, accum_steps=2)


def test_loss_decreases_in_bf16(lab):
    check_learns(lab, accum_steps=3, precision="bf16")
