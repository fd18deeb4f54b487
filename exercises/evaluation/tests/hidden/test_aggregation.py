"""Metrics over uneven batches equal the same submission's metrics over one batch of the
same data: statistics are gathered over the whole loader, not averaged per batch."""
import pytest

from _eval_fixed import FixedLogits, LMData, class_batches, make_classification, same_metrics
from evaluate import evaluate, evaluate_lm

CORE = ("accuracy", "macro_f1", "auroc", "num_samples")
LM = ("perplexity", "nll", "num_tokens")


@pytest.mark.parametrize("sizes", [[7, 7, 7, 7, 2], [1, 7, 1, 7, 1, 7, 6], [13, 17]], ids=["last-smaller", "ones-and-sevens", "two"])
def test_classification_over_uneven_batches(sizes):
    logits, labels = make_classification(20, 30, 3, weights=[0.5, 0.3, 0.2], hit=0.6)
    whole = evaluate(FixedLogits(), class_batches(logits, labels, [30]))
    split = evaluate(FixedLogits(), class_batches(logits, labels, sizes))
    assert not same_metrics(split, whole, CORE), {k: (split[k], whole[k]) for k in CORE}


def test_lm_over_uneven_batches():
    data = LMData(21, [6] * 7)
    whole = evaluate_lm(data.model(), data.batches([7]))
    split = evaluate_lm(data.model(), data.batches([1, 4, 2]))
    assert not same_metrics(split, whole, LM), {k: (split[k], whole[k]) for k in LM}


def test_lm_over_batches_of_different_lengths():
    # Every batch holds sequences of one length (no padding); batches differ in token count.
    data = LMData(22, [3, 3, 3, 3, 12, 12])
    grouped = evaluate_lm(data.model(), data.batches([4, 2]))
    one_each = evaluate_lm(data.model(), data.batches([1] * 6))
    assert not same_metrics(grouped, one_each, LM), {k: (grouped[k], one_each[k]) for k in LM}
