"""Expected calibration error on one batch matches the float64 reference with the README's
binning (equal-width bins over (0, 1], right edge included)."""
from _eval_fixed import FixedLogits, close, make_classification, ref_ece
from evaluate import evaluate


def test_ece_default_fifteen_bins():
    logits, labels = make_classification(70, 60, 3, hit=0.6)
    got = evaluate(FixedLogits(), [{"inputs": logits, "labels": labels}])["ece"]
    want = ref_ece(logits, labels, 15)
    assert close(got, want), (got, want)


def test_ece_ten_bins_binary():
    logits, labels = make_classification(71, 50, 2, hit=0.5)
    got = evaluate(FixedLogits(), [{"inputs": logits, "labels": labels}], ece_bins=10)["ece"]
    want = ref_ece(logits, labels, 10)
    assert close(got, want), (got, want)


def test_ece_overconfident_model():
    logits, labels = make_classification(72, 60, 4, hit=0.4, scale=2.5, boost=3.0)
    got = evaluate(FixedLogits(), [{"inputs": logits, "labels": labels}])["ece"]
    want = ref_ece(logits, labels, 15)
    assert want > 0.15
    assert close(got, want), (got, want)
