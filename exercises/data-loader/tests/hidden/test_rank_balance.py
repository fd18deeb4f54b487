"""Ranks receive equal shares of every epoch (within one sample), as DDP needs.

Shares are counted in distinct samples of one process per rank: duplicates, drops and worker
splitting are the exactly-once check's, so a loader that breaks those does not lose here too."""
import pytest

from loader import ShardedTokenDataset

LAYOUTS = {
    "even": [12, 12, 12, 12],
    "uneven": [9, 1, 0, 14, 3, 6],
    "skewed": [30, 1, 2],
    "tiny": [5],
}


def shares(data, collect, ids, world_size):
    counts = []
    for rank in range(world_size):
        ds = ShardedTokenDataset(data.paths, seed=4, rank=rank, world_size=world_size)
        ds.set_epoch(2)
        counts.append(len(set(ids(collect(ds, 0, cap=data.n + 10)))))
    return counts


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ranks_get_equal_shares(make_data, collect, ids, layout):
    data = make_data(LAYOUTS[layout])
    counts = shares(data, collect, ids, 2)
    assert all(data.n // 2 <= c <= -(-data.n // 2) for c in counts), counts


def test_three_ranks_get_equal_shares(make_data, collect, ids):
    data = make_data(LAYOUTS["skewed"])
    counts = shares(data, collect, ids, 3)
    assert all(data.n // 3 <= c <= -(-data.n // 3) for c in counts), counts
