"""Public: the padding collate on simple batches."""
import torch

from collate import PadCollator


def sample(sample_id, tokens):
    t = torch.tensor(tokens, dtype=torch.int64)
    return {"sample_id": sample_id, "input_ids": t, "labels": t.clone()}


def test_pads_right():
    out = PadCollator(pad_id=0)([sample(1, [5, 6, 7]), sample(2, [8])])
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_dtypes_and_shapes():
    out = PadCollator()([sample(1, [5, 6, 7]), sample(2, [8]), sample(3, [9, 9])])
    for key in ("input_ids", "attention_mask", "labels"):
        assert out[key].shape == (3, 3), key
        assert out[key].dtype == torch.int64, key
    for key in ("lengths", "sample_ids"):
        assert out[key].shape == (3,), key
        assert out[key].dtype == torch.int64, key


def test_labels_padded_with_ignore_index():
    out = PadCollator(pad_id=0)([sample(1, [5, 6, 7]), sample(2, [8])])
    assert out["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]


def test_lengths_and_sample_ids():
    out = PadCollator()([sample(10, [5, 6, 7]), sample(20, [8]), sample(30, [1, 2])])
    assert out["lengths"].tolist() == [3, 1, 2]
    assert out["sample_ids"].tolist() == [10, 20, 30]


def test_truncates_to_max_length():
    out = PadCollator(pad_id=0, max_length=2)([sample(1, [5, 6, 7]), sample(2, [8])])
    assert out["input_ids"].tolist() == [[5, 6], [8, 0]]
    assert out["labels"].tolist() == [[5, 6], [8, -100]]
    assert out["lengths"].tolist() == [2, 1]
