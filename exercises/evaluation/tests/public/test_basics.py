"""Public: the result dicts on simple, hand-checkable inputs."""
import math

import torch
from torch import nn

from evaluate import evaluate, evaluate_lm


class Identity(nn.Module):
    """Returns its inputs as the logits (with one frozen parameter, so it has a device)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()), requires_grad=False)

    def forward(self, x):
        return x * self.scale


class UniformLM(nn.Module):
    """A token-level head that gives every token of the vocabulary the same logit."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.scale = nn.Parameter(torch.ones(()), requires_grad=False)

    def forward(self, input_ids):
        return torch.zeros(*input_ids.shape, self.vocab) * self.scale


def test_perfect_classifier():
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    logits = torch.nn.functional.one_hot(labels, 3).float() * 4.0
    out = evaluate(Identity(), [{"inputs": logits[:4], "labels": labels[:4]},
                                {"inputs": logits[4:], "labels": labels[4:]}])
    assert out["num_samples"] == 6
    assert out["accuracy"] == 1.0
    assert math.isclose(out["macro_f1"], 1.0)
    assert math.isclose(out["auroc"], 1.0)


def test_simple_binary_accuracy_and_auroc():
    # predictions: 1, 1, 0, 0 ; labels: 1, 0, 0, 1
    logits = torch.tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]])
    labels = torch.tensor([1, 0, 0, 1])
    out = evaluate(Identity(), [{"inputs": logits, "labels": labels}])
    assert math.isclose(out["accuracy"], 0.5)
    # p[:, 1] ranks the samples 0 > 1 > 2 > 3: of the 4 (positive, negative) pairs, the
    # positive scores higher in (0, 1) and (0, 2), lower in (3, 1) and (3, 2).
    assert math.isclose(out["auroc"], 0.5)


def test_result_types():
    logits = torch.tensor([[0.0, 2.0], [0.5, 1.0], [1.0, 0.0]])
    out = evaluate(Identity(), [{"inputs": logits, "labels": torch.tensor([1, 0, 0])}])
    for key in ("accuracy", "macro_f1", "auroc"):
        assert type(out[key]) is float, (key, type(out[key]))
    assert type(out["num_samples"]) is int
    lm = evaluate_lm(UniformLM(4), [{"input_ids": torch.tensor([[5, 6]]), "labels": torch.tensor([[1, 2]]),
                                   "attention_mask": torch.tensor([[1, 1]])}])
    assert type(lm["perplexity"]) is float and type(lm["nll"]) is float
    assert type(lm["num_tokens"]) is int


def test_uniform_lm_has_perplexity_vocab_size():
    vocab = 7
    batches = [{"input_ids": torch.tensor([[5, 6, 7], [8, 9, 1]]), "labels": torch.tensor([[1, 2, 3], [4, 0, 6]]),
                "attention_mask": torch.ones(2, 3, dtype=torch.int64)},
               {"input_ids": torch.tensor([[2, 3]]), "labels": torch.tensor([[5, 5]]),
                "attention_mask": torch.ones(1, 2, dtype=torch.int64)}]
    out = evaluate_lm(UniformLM(vocab), batches)
    assert out["num_tokens"] == 8
    assert math.isclose(out["nll"], math.log(vocab), rel_tol=1e-5)
    assert math.isclose(out["perplexity"], vocab, rel_tol=1e-5)
