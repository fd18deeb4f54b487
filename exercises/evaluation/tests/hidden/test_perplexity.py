"""evaluate_lm on one batch: token-weighted perplexity over the unpadded tokens, against a
float64 reference."""
from _eval_fixed import LMData, close
from evaluate import evaluate_lm


def _check(got, data):
    ppl, nll, tokens = data.reference()
    assert int(got["num_tokens"]) == tokens, (got["num_tokens"], tokens)
    assert close(got["nll"], nll, rel=1e-4), (got["nll"], nll)
    assert close(got["perplexity"], ppl, rel=1e-4), (got["perplexity"], ppl)


def test_perplexity_without_padding():
    data = LMData(10, [7, 7, 7])
    _check(evaluate_lm(data.model(), data.batches([3])), data)


def test_perplexity_excludes_padding():
    # Unequal lengths; padded positions have label 0 and logits that strongly predict token 1.
    data = LMData(11, [9, 2, 5, 1])
    _check(evaluate_lm(data.model(), data.batches([4])), data)
