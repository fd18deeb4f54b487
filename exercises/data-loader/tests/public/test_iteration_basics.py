"""Public: iterating the dataset in one process (or one worker), one rank."""
import pytest
import torch

from loader import ShardedTokenDataset


@pytest.mark.parametrize("num_workers", [0, 1])
def test_yields_every_sample_once(make_data, collect, ids, num_workers):
    data = make_data([5, 8, 3])
    ds = ShardedTokenDataset(data.paths, seed=1)
    got = ids(collect(ds, num_workers, cap=data.n + 10))
    assert sorted(got) == sorted(data.ids)


def test_sample_format(make_data):
    data = make_data([4, 4])
    ds = ShardedTokenDataset(data.paths, seed=0)
    samples = list(ds)
    assert len(samples) == data.n
    for s in samples:
        assert set(s) >= {"sample_id", "input_ids", "labels"}
        assert isinstance(s["sample_id"], int)
        for key in ("input_ids", "labels"):
            assert isinstance(s[key], torch.Tensor)
            assert s[key].dtype == torch.int64 and s[key].dim() == 1
        expected = torch.from_numpy(data.tokens[s["sample_id"]].astype("int64"))
        assert torch.equal(s["input_ids"], expected)
        assert torch.equal(s["labels"], expected)


def test_same_seed_same_order(make_data, ids):
    data = make_data([6, 6, 6])
    a = ShardedTokenDataset(data.paths, seed=7)
    b = ShardedTokenDataset(data.paths, seed=7)
    assert ids(a) == ids(b)


def test_set_epoch_changes_order(make_data, ids):
    data = make_data([6, 6, 6])
    ds = ShardedTokenDataset(data.paths, seed=7)
    ds.set_epoch(0)
    first = ids(ds)
    ds.set_epoch(1)
    second = ids(ds)
    assert sorted(first) == sorted(second) == sorted(data.ids)
    assert first != second
