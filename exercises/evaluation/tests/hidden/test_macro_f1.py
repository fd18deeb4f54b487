"""Macro-F1 on one batch: the unweighted mean of per-class F1 over the classes present in
the labels or the predictions, as in the README (not micro- or support-weighted F1)."""
import numpy as np

from _eval_fixed import FixedLogits, close, make_classification, ref_macro_f1, ref_micro_f1, ref_weighted_f1
from evaluate import evaluate


def _all_classes_everywhere(num_classes):
    def accept(logits, labels):
        preds = logits.argmax(axis=1)
        return len(set(labels.tolist())) == num_classes and len(set(preds.tolist())) == num_classes
    return accept


def _distinct_from_other_averages(logits, labels):
    macro = ref_macro_f1(logits, labels)
    return abs(macro - ref_weighted_f1(logits, labels)) > 0.03 and abs(macro - ref_micro_f1(logits, labels)) > 0.03


def test_macro_f1_imbalanced_multiclass():
    def accept(logits, labels):
        return _all_classes_everywhere(4)(logits, labels) and _distinct_from_other_averages(logits, labels)

    logits, labels = make_classification(3, 60, 4, weights=[0.55, 0.25, 0.15, 0.05], hit=0.5, accept=accept)
    want = ref_macro_f1(logits, labels)
    got = evaluate(FixedLogits(), [{"inputs": logits, "labels": labels}])
    assert close(got["macro_f1"], want), (got["macro_f1"], want)


def test_macro_f1_binary_averages_both_classes():
    def accept(logits, labels):
        preds = logits.argmax(axis=1)
        tp = np.sum((preds == 1) & (labels == 1))
        positive_f1 = 2 * tp / (np.sum(preds == 1) + np.sum(labels == 1))
        return (_all_classes_everywhere(2)(logits, labels) and _distinct_from_other_averages(logits, labels)
                and abs(positive_f1 - ref_macro_f1(logits, labels)) > 0.03)

    logits, labels = make_classification(4, 50, 2, weights=[0.8, 0.2], accept=accept)
    want = ref_macro_f1(logits, labels)
    got = evaluate(FixedLogits(), [{"inputs": logits, "labels": labels}])
    assert close(got["macro_f1"], want), (got["macro_f1"], want)


def test_macro_f1_counts_a_class_that_is_only_predicted():
    # Class 2 never occurs in the labels but is predicted for some samples: its F1 is 0 and it
    # is part of the average.
    def accept(logits, labels):
        preds = logits.argmax(axis=1)
        return set(labels.tolist()) == {0, 1} and np.sum(preds == 2) >= 3 and set(preds.tolist()) == {0, 1, 2}

    logits, labels = make_classification(5, 40, 3, weights=[0.6, 0.4, 0.0], accept=accept)
    want = ref_macro_f1(logits, labels)
    got = evaluate(FixedLogits(), [{"inputs": logits, "labels": labels}])
    assert close(got["macro_f1"], want), (got["macro_f1"], want)
