"""PadCollator: padding comes from lengths, never from token values; inputs are left alone."""
import copy

import torch

from collate import PadCollator


def sample(sample_id, tokens, labels=None):
    t = torch.tensor(tokens, dtype=torch.int64)
    return {"sample_id": sample_id, "input_ids": t, "labels": t.clone() if labels is None else torch.tensor(labels)}


def test_pad_id_may_be_a_real_token():
    out = PadCollator(pad_id=0)([sample(1, [0, 5, 0]), sample(2, [7])])
    assert out["input_ids"].tolist() == [[0, 5, 0], [7, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["labels"].tolist() == [[0, 5, 0], [7, -100, -100]]
    assert out["lengths"].tolist() == [3, 1]


def test_pad_id_shared_with_end_of_sequence_token():
    eos = 2  # a common setup: the tokenizer's EOS doubles as the pad token
    out = PadCollator(pad_id=eos)([sample(1, [5, 6, eos]), sample(2, [7, eos])])
    assert out["input_ids"].tolist() == [[5, 6, eos], [7, eos, eos]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert out["labels"].tolist() == [[5, 6, eos], [7, eos, -100]]


def test_custom_pad_id():
    out = PadCollator(pad_id=3)([sample(1, [3, 4, 3, 4]), sample(2, [9, 9])])
    assert out["input_ids"].tolist() == [[3, 4, 3, 4], [9, 9, 3, 3]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert out["labels"].tolist() == [[3, 4, 3, 4], [9, 9, -100, -100]]


def test_does_not_mutate_inputs():
    batch = [sample(1, [1, 2, 3, 4, 5], labels=[1, -100, 3, 4, 5]), sample(2, [6]), sample(3, [])]
    before = copy.deepcopy(batch)
    PadCollator(pad_id=0, max_length=3)(batch)
    assert len(batch) == len(before)
    for got, want in zip(batch, before):
        assert got.keys() == want.keys()
        assert got["sample_id"] == want["sample_id"]
        for key in ("input_ids", "labels"):
            assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), key


def test_outputs_do_not_share_memory_with_inputs():
    batch = [sample(1, [1, 2, 3])]
    out = PadCollator(pad_id=0)(batch)
    for key in ("input_ids", "labels", "attention_mask"):
        out[key].fill_(42)
    assert batch[0]["input_ids"].tolist() == [1, 2, 3]
    assert batch[0]["labels"].tolist() == [1, 2, 3]
