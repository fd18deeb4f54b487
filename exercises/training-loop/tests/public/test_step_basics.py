"""Public: the building blocks on simple inputs (one micro-batch, one step, one checkpoint)."""
import torch

from checkpoint import load_checkpoint, save_checkpoint
from schedule import lr_at
from trainer import accumulation_step, clip_and_step


def test_lr_warms_up_then_decays():
    kwargs = dict(base_lr=0.1, warmup_steps=4, total_steps=20, min_lr=0.01)
    lrs = [lr_at(s, **kwargs) for s in range(20)]
    assert all(a < b for a, b in zip(lrs[:4], lrs[1:4])), lrs
    assert abs(lr_at(4, **kwargs) - 0.1) < 1e-12  # cosine starts at base_lr
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:])), lrs
    assert abs(lr_at(20, **kwargs) - 0.01) < 1e-12


def test_one_micro_batch_gives_the_token_mean_loss(lab):
    model = lab.make_model(0)
    batch = lab.make_micro_batches(1, seed=1)
    loss = accumulation_step(model, batch)
    got = lab.grads_of(model)
    model.zero_grad(set_to_none=True)
    expected = lab.token_mean_loss(model, batch)
    expected.backward()
    assert isinstance(loss, float)
    assert abs(loss - expected.item()) < 1e-5
    for g, e in zip(got, lab.grads_of(model)):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)


def test_clip_and_step_updates_and_returns_the_norm(lab):
    model = lab.make_model(0)
    before = [p.detach().clone() for p in model.parameters()]
    accumulation_step(model, lab.make_micro_batches(1, seed=2))
    norm = lab.grad_norm([p.grad for p in model.parameters()])
    opt = lab.make_optimizer(model)
    got = clip_and_step(model, opt, max_grad_norm=None)
    assert abs(got - norm) < 1e-4 * norm
    assert len(opt.calls) == 1
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_checkpoint_round_trip(tmp_path):
    state = {"weights": torch.arange(6.0).reshape(2, 3), "step": 7, "nested": {"lr": 0.5, "ids": [1, 2]}}
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, state)
    got = load_checkpoint(path)
    assert torch.equal(got["weights"], state["weights"])
    assert got["step"] == 7 and got["nested"] == {"lr": 0.5, "ids": [1, 2]}
