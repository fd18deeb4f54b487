"""Every sample exactly once per epoch across all ranks x workers."""
import itertools

import pytest

from loader import ShardedTokenDataset

LAYOUTS = {
    "even": [12, 12, 12, 12],
    "uneven": [9, 1, 0, 14, 3, 6],  # an empty and a one-sample shard; odd total
    "few-shards": [7, 6],  # fewer shards than ranks x workers
    "tiny": [5],  # fewer samples than ranks x workers
}
CASES = [
    pytest.param(layout, nw, ws, id=f"{layout}-w{nw}-r{ws}")
    for layout in LAYOUTS
    for ws in (1, 2)
    for nw in (0, 1, 3)
]


def union_over_ranks(data, collect, ids, *, num_workers, world_size, epoch=1, **kwargs):
    got = []
    for rank in range(world_size):
        ds = ShardedTokenDataset(data.paths, rank=rank, world_size=world_size, **kwargs)
        ds.set_epoch(epoch)
        got += ids(collect(ds, num_workers, cap=data.n + 10))
    return got


@pytest.mark.parametrize("layout, num_workers, world_size", CASES)
def test_exactly_once(make_data, collect, ids, layout, num_workers, world_size):
    data = make_data(LAYOUTS[layout])
    got = union_over_ranks(data, collect, ids, num_workers=num_workers, world_size=world_size, seed=3)
    assert sorted(got) == sorted(data.ids)


def test_exactly_once_without_shuffle(make_data, collect, ids):
    data = make_data(LAYOUTS["uneven"])
    got = union_over_ranks(data, collect, ids, num_workers=3, world_size=2, seed=3, shuffle=False)
    assert sorted(got) == sorted(data.ids)


def test_exactly_once_three_ranks(make_data, collect, ids):
    data = make_data(LAYOUTS["uneven"])
    got = union_over_ranks(data, collect, ids, num_workers=2, world_size=3, seed=5)
    assert sorted(got) == sorted(data.ids)


def test_exactly_once_in_every_epoch(make_data, collect, ids):
    data = make_data(LAYOUTS["uneven"])
    for epoch in range(3):
        got = union_over_ranks(data, collect, ids, num_workers=2, world_size=2, seed=9, epoch=epoch)
        assert sorted(got) == sorted(data.ids), f"epoch {epoch}"


def test_samples_carry_their_own_tokens(make_data, collect):
    data = make_data(LAYOUTS["uneven"])
    for rank in range(2):
        ds = ShardedTokenDataset(data.paths, seed=2, rank=rank, world_size=2)
        for s in collect(ds, 3, cap=data.n + 10):
            expected = data.tokens[int(s["sample_id"])].tolist()
            assert s["labels"].tolist() == expected
            assert s["input_ids"].tolist() == expected


@pytest.mark.parametrize("num_workers", [1, 3])
def test_resume_with_workers_yields_what_one_process_would(make_data, collect, ids, num_workers):
    # Compared with the candidate's own resume in one process: a wrong resume is the resume
    # check's, so this only asks that workers split a resumed epoch exactly once.
    data = make_data(LAYOUTS["uneven"])
    for rank in range(2):
        ds = ShardedTokenDataset(data.paths, seed=21, rank=rank, world_size=2)
        list(itertools.islice(iter(ds), 5))
        state = ds.state_dict()
        alone = ShardedTokenDataset(data.paths, seed=21, rank=rank, world_size=2)
        alone.load_state_dict(state)
        expected = ids(itertools.islice(iter(alone), data.n + 10))
        resumed = ShardedTokenDataset(data.paths, seed=21, rank=rank, world_size=2)
        resumed.load_state_dict(state)
        rest = ids(collect(resumed, num_workers, cap=data.n + 10))
        assert sorted(rest) == sorted(expected), f"rank {rank}"
