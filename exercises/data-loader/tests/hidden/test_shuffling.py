"""Shuffling is a pure function of (seed, epoch) and really shuffles."""
import pytest

from loader import ShardedTokenDataset

SIZES = [10, 10, 10, 10]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_same_seed_and_epoch_same_order(make_data, collect, ids, num_workers):
    data = make_data(SIZES)
    orders = []
    for _ in range(2):
        ds = ShardedTokenDataset(data.paths, seed=11, rank=1, world_size=2)
        ds.set_epoch(3)
        orders.append(ids(collect(ds, num_workers, cap=data.n + 10)))
    assert orders[0] == orders[1]


def test_reiterating_an_epoch_repeats_it(make_data, ids):
    data = make_data(SIZES)
    ds = ShardedTokenDataset(data.paths, seed=11)
    first = ids(ds)
    assert ids(ds) == first
    ds.set_epoch(1)
    ds.set_epoch(0)
    assert ids(ds) == first


def test_different_seed_different_order(make_data, ids):
    data = make_data(SIZES)
    a = ids(ShardedTokenDataset(data.paths, seed=1))
    b = ids(ShardedTokenDataset(data.paths, seed=2))
    assert sorted(a) == sorted(b)
    assert a != b


def test_without_shuffle_file_order(make_data, ids):
    data = make_data([4, 0, 7, 1])
    ds = ShardedTokenDataset(data.paths, seed=1, shuffle=False)
    assert ids(ds) == data.ids
    ds.set_epoch(5)
    assert ids(ds) == data.ids


def test_shard_order_is_shuffled(make_data, ids):
    # Across seeds, not epochs: a new order per epoch is the public check's business.
    data = make_data(SIZES)
    first_seen = []
    for seed in range(6):
        ds = ShardedTokenDataset(data.paths, seed=seed)
        order = []
        for i in ids(ds):
            if data.shard_of[i] not in order:
                order.append(data.shard_of[i])
        first_seen.append(order)
    assert any(order != [0, 1, 2, 3] for order in first_seen)
    assert len({tuple(o) for o in first_seen}) > 1


def test_rows_within_shards_are_shuffled(make_data, ids):
    data = make_data(SIZES)
    position = {i: k for k, i in enumerate(data.ids)}  # file order
    got = ids(ShardedTokenDataset(data.paths, seed=0))
    unsorted_shards = 0
    for shard in range(len(SIZES)):
        seen = [position[i] for i in got if data.shard_of[i] == shard]
        unsorted_shards += seen != sorted(seen)
    assert unsorted_shards >= 2


def test_order_does_not_depend_on_masking(make_data, ids):
    data = make_data(SIZES)
    plain = ShardedTokenDataset(data.paths, seed=6)
    masked = ShardedTokenDataset(data.paths, seed=6, mask_prob=0.3, mask_token_id=5000)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        masked.set_epoch(epoch)
        assert ids(plain) == ids(masked)
