"""Mid-epoch state_dict()/load_state_dict(): resuming yields exactly the rest of the epoch.

Compared with the candidate's own uninterrupted epoch, in one process, without masking: which
samples an epoch holds is the exactly-once check's, resuming with workers is compared there with
this resume, and reproducing masks after a resume is the augmentation check's."""
import itertools

import pytest
from torch.utils.data import DataLoader

from loader import ShardedTokenDataset

SIZES = [9, 1, 0, 14, 3, 6]  # 33 samples


def make(paths, **kwargs):
    kwargs.setdefault("seed", 21)
    return ShardedTokenDataset(paths, **kwargs)


def take(ds, k):
    """Consume k samples from a fresh iterator and return (samples, state)."""
    it = iter(ds)
    got = list(itertools.islice(it, k))
    return got, ds.state_dict()


def as_pairs(samples):
    return [(int(s["sample_id"]), s["input_ids"].tolist(), s["labels"].tolist()) for s in samples]


@pytest.mark.parametrize("k", [0, 1, 8, 32, 33])
def test_resume_yields_exactly_the_rest(make_data, k):
    data = make_data(SIZES)
    full = list(make(data.paths))
    got, state = take(make(data.paths), k)
    assert as_pairs(got) == as_pairs(full[:k])
    resumed = make(data.paths)
    resumed.load_state_dict(state)
    rest = list(itertools.islice(iter(resumed), data.n + 10))
    assert as_pairs(rest) == as_pairs(full[k:])


def test_resume_after_dataloader_batches(make_data, collect):
    data = make_data(SIZES)
    ds = make(data.paths)
    full = list(make(data.paths))
    loader = DataLoader(ds, batch_size=4, num_workers=0, collate_fn=list)
    it = iter(loader)
    seen = [s for batch in itertools.islice(it, 3) for s in batch]
    state = ds.state_dict()
    assert as_pairs(seen) == as_pairs(full[:12])

    resumed = make(data.paths)
    resumed.load_state_dict(state)
    rest = [s for batch in collect(resumed, 0, cap=data.n, batch_size=4, collate_fn=list) for s in batch]
    assert as_pairs(rest) == as_pairs(full[12:])


def test_resume_in_a_later_epoch(make_data):
    data = make_data(SIZES)
    ds = make(data.paths)
    list(ds)  # a whole epoch 0
    ds.set_epoch(1)
    ref = make(data.paths)
    ref.set_epoch(1)
    full_1 = list(ref)
    got, state = take(ds, 10)
    assert as_pairs(got) == as_pairs(full_1[:10])

    resumed = make(data.paths)
    resumed.load_state_dict(state)
    assert as_pairs(resumed) == as_pairs(full_1[10:])


def test_set_epoch_to_the_same_epoch_keeps_the_position(make_data):
    data = make_data(SIZES)
    ref = make(data.paths)
    ref.set_epoch(2)
    full = list(ref)
    ds = make(data.paths)
    ds.set_epoch(2)
    _, state = take(ds, 7)

    resumed = make(data.paths)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # what a training loop does at the top of every epoch
    assert as_pairs(resumed) == as_pairs(full[7:])


def test_next_epoch_after_resume_is_complete(make_data):
    data = make_data(SIZES)
    ref = make(data.paths)
    ref.set_epoch(1)
    epoch_1 = list(ref)
    _, state = take(make(data.paths), 20)

    resumed = make(data.paths)
    resumed.load_state_dict(state)
    list(resumed)
    resumed.set_epoch(1)
    assert as_pairs(resumed) == as_pairs(epoch_1)


def test_resume_on_each_rank(make_data):
    data = make_data(SIZES)
    for rank in range(2):
        full = list(make(data.paths, rank=rank, world_size=2))
        got, state = take(make(data.paths, rank=rank, world_size=2), 6)
        resumed = make(data.paths, rank=rank, world_size=2)
        resumed.load_state_dict(state)
        rest = list(itertools.islice(iter(resumed), data.n + 10))
        assert as_pairs(got + rest) == as_pairs(full), f"rank {rank}"
