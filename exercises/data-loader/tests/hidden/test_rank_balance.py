"""Ranks receive equal shares of every epoch (within one sample), as DDP needs."""
import pytest

from loader import ShardedTokenDataset

LAYOUTS = {
    "even": [12, 12, 12, 12],
    "uneven": [9, 1, 0, 14, 3, 6],
    "skewed": [30, 1, 2],
    "tiny": [5],
}


@pytest.mark.parametrize("num_workers", [0, 3])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_ranks_get_equal_shares(make_data, collect, layout, num_workers):
    data = make_data(LAYOUTS[layout])
    counts = []
    for rank in range(2):
        ds = ShardedTokenDataset(data.paths, seed=4, rank=rank, world_size=2)
        ds.set_epoch(2)
        counts.append(len(collect(ds, num_workers, cap=data.n + 10)))
    assert sum(counts) == data.n
    assert max(counts) - min(counts) <= 1, counts


def test_three_ranks_get_equal_shares(make_data, collect):
    data = make_data(LAYOUTS["skewed"])
    counts = []
    for rank in range(3):
        ds = ShardedTokenDataset(data.paths, seed=4, rank=rank, world_size=3)
        counts.append(len(collect(ds, 2, cap=data.n + 10)))
    assert sum(counts) == data.n
    assert max(counts) - min(counts) <= 1, counts
