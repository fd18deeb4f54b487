"""Accuracy on one batch matches a float64 reference."""
from _eval_fixed import FixedLogits, close, make_classification, ref_accuracy
from evaluate import evaluate


def test_accuracy_binary():
    logits, labels = make_classification(1, 40, 2)
    got = evaluate(FixedLogits(), [{"inputs": logits, "labels": labels}])
    assert close(got["accuracy"], ref_accuracy(logits, labels)), (got["accuracy"], ref_accuracy(logits, labels))


def test_accuracy_multiclass():
    logits, labels = make_classification(2, 50, 5)
    got = evaluate(FixedLogits(), [{"inputs": logits, "labels": labels}])
    assert close(got["accuracy"], ref_accuracy(logits, labels)), (got["accuracy"], ref_accuracy(logits, labels))
