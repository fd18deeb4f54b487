"""Evaluation changes neither the model's parameters and buffers nor the loader's tensors."""
import torch

from _eval_fixed import LMData, class_batches, mlp, random_features, same_tensors, snapshot, tiny_lm
from evaluate import evaluate, evaluate_lm


def _model_state(model):
    return [(name, t.detach().clone(), t.requires_grad) for name, t in model.named_parameters()] + \
           [(name, t.detach().clone(), False) for name, t in model.named_buffers()]


def _same_state(a, b):
    return len(a) == len(b) and all(na == nb and ga == gb and same_tensors(ta, tb)
                                    for (na, ta, ga), (nb, tb, gb) in zip(a, b))


def test_evaluate_leaves_the_model_alone():
    inputs, labels = random_features(100, 20)
    model = mlp(seed=100).eval()
    before = _model_state(model)
    evaluate(model, class_batches(inputs, labels, [20]))
    assert _same_state(_model_state(model), before)
    assert all(p.grad is None for p in model.parameters())


def test_evaluate_leaves_the_batches_alone():
    inputs, labels = random_features(101, 20)
    valid = torch.ones(20, dtype=torch.bool)
    valid[-3:] = False
    batches = class_batches(inputs, labels, [8, 8, 4], valid)
    before = snapshot(batches)
    evaluate(mlp(seed=101).eval(), batches)
    assert same_tensors(batches, before)


def test_evaluate_lm_leaves_model_and_batches_alone():
    data = LMData(102, [6, 2, 4])  # 12 position ids + the padding id: all < vocab (13)
    batches = data.batches([3])
    before = snapshot(batches)
    model = tiny_lm(vocab=data.vocab, seed=102).eval()
    state = _model_state(model)
    evaluate_lm(model, batches)
    assert same_tensors(batches, before)
    assert _same_state(_model_state(model), state)
