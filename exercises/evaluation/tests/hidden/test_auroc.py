"""AUROC on one batch matches the Mann-Whitney reference (ties count one half): binary on
p[:, 1], multi-class as the one-vs-rest macro average over softmax probabilities."""
import math

from _eval_fixed import FixedLogits, close, tied_pair_fraction, make_classification, ref_auroc
from evaluate import evaluate


def _run(logits, labels):
    return evaluate(FixedLogits(), [{"inputs": logits, "labels": labels}])["auroc"]


def test_auroc_binary_without_ties():
    logits, labels = make_classification(6, 40, 2, weights=[0.6, 0.4])
    got, want = _run(logits, labels), ref_auroc(logits, labels)
    assert close(got, want), (got, want)


def test_auroc_binary_with_ties():
    def accept(logits, labels):
        return tied_pair_fraction(logits, labels, 1, 1) >= 0.1

    logits, labels = make_classification(7, 40, 2, protos=5, weights=[0.5, 0.5], hit=0.7, accept=accept)
    got, want = _run(logits, labels), ref_auroc(logits, labels)
    assert close(got, want), (got, want)


def test_auroc_multiclass_one_vs_rest_with_ties():
    def accept(logits, labels):
        return len(set(labels.tolist())) == 4 and all(tied_pair_fraction(logits, labels, c, c) >= 0.1 for c in range(4))

    logits, labels = make_classification(8, 48, 4, protos=5, hit=0.6, accept=accept)
    got, want = _run(logits, labels), ref_auroc(logits, labels)
    assert close(got, want), (got, want)


def test_auroc_multiclass_scores_are_probabilities():
    # Ranking samples by a class's raw logit is not ranking them by its probability.
    def accept(logits, labels):
        return len(set(labels.tolist())) == 4 and abs(ref_auroc(logits, labels) - ref_auroc(logits, labels, scores="logits")) > 0.01

    logits, labels = make_classification(9, 48, 4, hit=0.5, accept=accept)
    got, want = _run(logits, labels), ref_auroc(logits, labels)
    assert not math.isnan(want)
    assert close(got, want), (got, want)
