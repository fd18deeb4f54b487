"""Documented edge cases: an absent class, AUROC with a single class, nothing to evaluate."""
import math

import numpy as np
import pytest
import torch

from _eval_fixed import FixedLogits, LMData, close, make_classification, ref_auroc
from evaluate import evaluate, evaluate_lm


def test_class_absent_everywhere_is_left_out_of_macro_f1():
    # Class 3 is in neither the labels nor the predictions (its logit is far below the rest):
    # the macro average must equal the one computed without that column.
    logits, labels = make_classification(90, 30, 3, weights=[0.5, 0.3, 0.2], hit=0.6)
    with_absent = torch.cat([logits, torch.full((30, 1), -30.0)], dim=1)
    four = evaluate(FixedLogits(), [{"inputs": with_absent, "labels": labels}])["macro_f1"]
    three = evaluate(FixedLogits(), [{"inputs": logits, "labels": labels}])["macro_f1"]
    assert close(four, float(three)), (four, three)


def test_binary_auroc_with_one_class_is_nan():
    logits, _ = make_classification(91, 20, 2)
    got = evaluate(FixedLogits(), [{"inputs": logits, "labels": torch.ones(20, dtype=torch.int64)}])
    assert math.isnan(float(got["auroc"])), got["auroc"]


def test_multiclass_auroc_with_one_class_is_nan():
    logits, _ = make_classification(92, 20, 3)
    got = evaluate(FixedLogits(), [{"inputs": logits, "labels": torch.full((20,), 2, dtype=torch.int64)}])
    assert math.isnan(float(got["auroc"])), got["auroc"]


def test_multiclass_auroc_skips_a_class_without_positives():
    def accept(logits, labels):
        return set(labels.tolist()) == {0, 1, 2}

    logits, labels = make_classification(93, 40, 4, weights=[0.4, 0.3, 0.3, 0.0], accept=accept)
    got = evaluate(FixedLogits(), [{"inputs": logits, "labels": labels}])["auroc"]
    want = ref_auroc(logits, labels)
    assert not np.isnan(want)
    assert close(got, want), (got, want)


def test_empty_loader_raises_value_error():
    with pytest.raises(ValueError):
        evaluate(FixedLogits(), [])


def test_lm_without_real_tokens_raises_value_error():
    data = LMData(94, [4, 4])
    batches = data.batches([2])
    batches[0]["attention_mask"] = torch.zeros_like(batches[0]["attention_mask"])
    with pytest.raises(ValueError):
        evaluate_lm(data.model(), batches)
