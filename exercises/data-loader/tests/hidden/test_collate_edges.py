"""PadCollator on edge cases: truncation, tiny batches, empty sequences, input types, workers."""
import pytest
import torch

from collate import PadCollator
from torch.utils.data import Dataset


def sample(sample_id, tokens, labels=None, dtype=torch.int64):
    t = torch.tensor(tokens, dtype=dtype)
    return {"sample_id": sample_id, "input_ids": t, "labels": t.clone() if labels is None else torch.tensor(labels, dtype=dtype)}


def test_truncation_keeps_the_first_tokens():
    batch = [sample(1, [1, 2, 3, 4, 5], labels=[11, 12, 13, 14, 15]), sample(2, [6, 7]), sample(3, [8, 9, 10])]
    out = PadCollator(pad_id=0, max_length=3)(batch)
    assert out["input_ids"].tolist() == [[1, 2, 3], [6, 7, 0], [8, 9, 10]]
    assert out["labels"].tolist() == [[11, 12, 13], [6, 7, -100], [8, 9, 10]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0], [1, 1, 1]]
    assert out["lengths"].tolist() == [3, 2, 3]


def test_max_length_above_longest_pads_to_longest():
    out = PadCollator(pad_id=0, max_length=50)([sample(1, [1, 2, 3]), sample(2, [4])])
    assert out["input_ids"].shape == (2, 3)
    assert out["lengths"].tolist() == [3, 1]


def test_batch_of_one():
    out = PadCollator(pad_id=0)([sample(4, [7, 8, 9])])
    assert out["input_ids"].tolist() == [[7, 8, 9]]
    assert out["attention_mask"].tolist() == [[1, 1, 1]]
    assert out["labels"].tolist() == [[7, 8, 9]]
    assert out["lengths"].tolist() == [3]
    assert out["sample_ids"].tolist() == [4]


def test_empty_sequence_in_batch():
    out = PadCollator(pad_id=0)([sample(1, []), sample(2, [5, 6])])
    assert out["input_ids"].tolist() == [[0, 0], [5, 6]]
    assert out["attention_mask"].tolist() == [[0, 0], [1, 1]]
    assert out["labels"].tolist() == [[-100, -100], [5, 6]]
    assert out["lengths"].tolist() == [0, 2]


def test_all_sequences_empty():
    out = PadCollator(pad_id=0)([sample(1, []), sample(2, [])])
    for key in ("input_ids", "attention_mask", "labels"):
        assert out[key].shape == (2, 0), key
        assert out[key].dtype == torch.int64, key
    assert out["lengths"].tolist() == [0, 0]


def test_empty_batch_is_an_error():
    with pytest.raises(ValueError):
        PadCollator()([])


def test_other_integer_inputs_become_int64():
    batch = [
        sample(1, [3, 4, 5], dtype=torch.int32),
        {"sample_id": 2, "input_ids": [6, 7], "labels": [6, 7]},
    ]
    out = PadCollator(pad_id=0)(batch)
    assert out["input_ids"].tolist() == [[3, 4, 5], [6, 7, 0]]
    assert out["labels"].tolist() == [[3, 4, 5], [6, 7, -100]]
    for key in ("input_ids", "attention_mask", "labels", "lengths", "sample_ids"):
        assert out[key].dtype == torch.int64, key


class FixedSamples(Dataset):
    """A fixed map-style dataset: this check grades the collator, never the candidate's loader."""

    def __init__(self, data):
        self.data = data
        self.ids = sorted(data.tokens)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        sid = self.ids[index]
        t = torch.as_tensor(self.data.tokens[sid], dtype=torch.int64)
        return {"sample_id": sid, "input_ids": t, "labels": t.clone()}


def test_in_a_dataloader_with_workers(make_data, collect):
    data = make_data([5, 7, 4], seed=3)
    batches = collect(FixedSamples(data), 2, cap=data.n, batch_size=4,
                      collate_fn=PadCollator(pad_id=0, max_length=8))
    seen = 0
    for batch in batches:
        assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["labels"].shape
        for row, sid in enumerate(batch["sample_ids"].tolist()):
            tokens = data.tokens[sid][:8].tolist()
            n = len(tokens)
            assert batch["lengths"][row] == n
            assert batch["input_ids"][row, :n].tolist() == tokens
            assert batch["attention_mask"][row].sum() == n
        seen += len(batch["sample_ids"])
    assert seen == data.n
