"""Samples marked valid=False (padding added by a distributed sampler) count nowhere: the
result equals the same submission's result on the same batches without them."""
import torch

from _eval_fixed import FixedLogits, class_batches, make_classification, same_metrics
from evaluate import evaluate

KEYS = ("accuracy", "macro_f1", "auroc", "num_samples")


def _data():
    logits, labels = make_classification(80, 30, 3, weights=[0.5, 0.3, 0.2], hit=0.6)
    wrong = torch.nonzero(logits.argmax(dim=1) != labels).flatten()
    return logits, labels, wrong[:4]  # misclassified samples: counting them twice shows


def test_padding_at_the_end_of_the_last_batch():
    logits, labels, dup = _data()
    plain = evaluate(FixedLogits(), class_batches(logits, labels, [8, 8, 8, 6]))
    # DistributedSampler pads the index list by repeating samples; they end up at the end.
    padded_logits = torch.cat([logits, logits[dup]])
    padded_labels = torch.cat([labels, labels[dup]])
    valid = torch.cat([torch.ones(30, dtype=torch.bool), torch.zeros(len(dup), dtype=torch.bool)])
    padded = evaluate(FixedLogits(), class_batches(padded_logits, padded_labels, [8, 8, 8, 6 + len(dup)], valid))
    assert int(padded["num_samples"]) == 30, padded["num_samples"]
    assert not same_metrics(padded, plain, KEYS), {k: (padded[k], plain[k]) for k in KEYS}


def test_padding_anywhere_in_a_batch():
    logits, labels, dup = _data()
    plain_batches = class_batches(logits, labels, [10, 10, 10])
    plain = evaluate(FixedLogits(), plain_batches)
    padded_batches = []
    for i, batch in enumerate(plain_batches):
        # insert a duplicate of a misclassified sample at a different place in every batch
        j = int(dup[i])
        at = [1, 5, 9][i]
        inputs = torch.cat([batch["inputs"][:at], logits[j:j + 1], batch["inputs"][at:]])
        batch_labels = torch.cat([batch["labels"][:at], labels[j:j + 1], batch["labels"][at:]])
        valid = torch.ones(11, dtype=torch.bool)
        valid[at] = False
        padded_batches.append({"inputs": inputs, "labels": batch_labels, "valid": valid})
    padded = evaluate(FixedLogits(), padded_batches)
    assert int(padded["num_samples"]) == 30, padded["num_samples"]
    assert not same_metrics(padded, plain, KEYS), {k: (padded[k], plain[k]) for k in KEYS}
