"""The model runs in eval mode during evaluation: dropout is off and BatchNorm uses (and
does not update) its running statistics."""
import torch

from _eval_fixed import Recorder, class_batches, eval_forward, mlp, random_features, tiny_lm
from evaluate import evaluate, evaluate_lm


def test_dropout_is_off_during_evaluate():
    inputs, labels = random_features(30, 24)
    model = Recorder(mlp(dropout=0.5, seed=30)).train()
    want = eval_forward(model.net, inputs)
    for _ in range(2):
        evaluate(model, class_batches(inputs, labels, [24]))
    assert len(model.outputs) == 2
    for out in model.outputs:
        assert torch.allclose(out, want, atol=1e-6), "outputs differ from the eval-mode forward"


def test_batchnorm_running_statistics_unchanged():
    inputs, labels = random_features(31, 24)
    inputs = inputs * 3 + 2  # statistics far from the running ones, so an update shows
    net = mlp(batchnorm=True, seed=31)
    model = Recorder(net).train()
    bn = net[1]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    evaluate(model, class_batches(inputs, labels, [8, 8, 8]))
    for key, value in bn.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_dropout_is_off_during_evaluate_lm():
    gen = torch.Generator().manual_seed(32)
    ids = torch.randint(0, 20, (3, 10), generator=gen)
    batch = {"input_ids": ids, "labels": torch.randint(0, 20, (3, 10), generator=gen),
             "attention_mask": torch.ones(3, 10, dtype=torch.int64)}
    model = Recorder(tiny_lm(dropout=0.5, seed=32)).train()
    want = eval_forward(model.net, ids)
    for _ in range(2):
        evaluate_lm(model, [batch])
    assert len(model.outputs) == 2
    for out in model.outputs:
        assert torch.allclose(out, want, atol=1e-6), "outputs differ from the eval-mode forward"
