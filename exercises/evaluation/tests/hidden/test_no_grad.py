"""Forward passes run without autograd, and the caller's grad mode is left as it was."""
import torch

from _eval_fixed import Recorder, class_batches, mlp, random_features, tiny_lm
from evaluate import evaluate, evaluate_lm


def _lm_batches():
    gen = torch.Generator().manual_seed(50)
    return [{"input_ids": torch.randint(0, 20, (2, 6), generator=gen), "labels": torch.randint(0, 20, (2, 6), generator=gen),
             "attention_mask": torch.ones(2, 6, dtype=torch.int64)} for _ in range(3)]


def test_evaluate_forward_without_grad():
    inputs, labels = random_features(51, 15)
    model = Recorder(mlp(seed=51)).eval()
    evaluate(model, class_batches(inputs, labels, [5, 5, 5]))
    assert model.grad_enabled == [False, False, False], model.grad_enabled


def test_evaluate_lm_forward_without_grad():
    model = Recorder(tiny_lm(seed=52)).eval()
    evaluate_lm(model, _lm_batches())
    assert model.grad_enabled == [False, False, False], model.grad_enabled


def test_grad_mode_is_restored():
    inputs, labels = random_features(53, 10)
    torch.set_grad_enabled(True)
    evaluate(mlp(seed=53).eval(), class_batches(inputs, labels, [10]))
    after_evaluate = torch.is_grad_enabled()
    torch.set_grad_enabled(True)
    evaluate_lm(tiny_lm(seed=53).eval(), _lm_batches())
    after_evaluate_lm = torch.is_grad_enabled()
    torch.set_grad_enabled(True)
    assert after_evaluate and after_evaluate_lm, (after_evaluate, after_evaluate_lm)
