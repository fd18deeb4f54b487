"""Afterwards every module's training flag is what it was before the call."""
import torch
from torch import nn

from _eval_fixed import class_batches, mlp, random_features, tiny_lm
from evaluate import evaluate, evaluate_lm


def _flags(model):
    return [(name, m.training) for name, m in model.named_modules()]


def test_training_model_stays_in_training_mode():
    inputs, labels = random_features(40, 12)
    model = mlp(dropout=0.1, seed=40).train()
    before = _flags(model)
    evaluate(model, class_batches(inputs, labels, [12]))
    assert _flags(model) == before


def test_eval_model_stays_in_eval_mode():
    inputs, labels = random_features(41, 12)
    model = mlp(dropout=0.1, seed=41).eval()
    before = _flags(model)
    evaluate(model, class_batches(inputs, labels, [12]))
    assert _flags(model) == before


def test_mixed_flags_are_each_restored():
    # Fine-tuning with a frozen BatchNorm: the model trains, one submodule stays in eval mode.
    inputs, labels = random_features(42, 12)
    torch.manual_seed(42)
    model = nn.Sequential(nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU()), nn.Linear(16, 3)).train()
    model[0][1].eval()
    before = _flags(model)
    evaluate(model, class_batches(inputs, labels, [12]))
    assert _flags(model) == before


def test_evaluate_lm_restores_training_mode():
    model = tiny_lm(dropout=0.1, seed=43).train()
    before = _flags(model)
    gen = torch.Generator().manual_seed(43)
    batch = {"input_ids": torch.randint(0, 20, (2, 5), generator=gen), "labels": torch.randint(0, 20, (2, 5), generator=gen),
             "attention_mask": torch.ones(2, 5, dtype=torch.int64)}
    evaluate_lm(model, [batch])
    assert _flags(model) == before
