"""Random token masking: right rate, reproducible, and different per worker, rank and epoch."""
import itertools

import pytest

from loader import ShardedTokenDataset

MASK_ID = 5000
SIZES = [8, 8, 8, 8, 8, 8]  # 48 samples
LENGTH = 64  # long enough that two independent masks are never equal by chance


def make(paths, **kwargs):
    kwargs.setdefault("seed", 5)
    kwargs.setdefault("mask_prob", 0.5)
    kwargs.setdefault("mask_token_id", MASK_ID)
    return ShardedTokenDataset(paths, **kwargs)


def masks(samples):
    """sample id -> tuple of masked positions."""
    out = {}
    for s in samples:
        out[int(s["sample_id"])] = tuple(s["input_ids"].eq(MASK_ID).nonzero().flatten().tolist())
    return out


def distinct_masks(samples):
    """Every sample's mask differs from every other sample's. Counted over distinct sample ids:
    whether the loader duplicates or drops samples is the exactly-once check's."""
    by_id = masks(samples)
    return len(by_id) >= len(SIZES) and len(set(by_id.values())) == len(by_id)


def test_mask_rate(make_data):
    data = make_data(SIZES, length=LENGTH)
    for p in (0.15, 0.5, 1.0):
        samples = list(make(data.paths, mask_prob=p))
        masked = sum(int(s["input_ids"].eq(MASK_ID).sum()) for s in samples)
        rate = masked / (data.n * LENGTH)
        assert abs(rate - p) < 0.05, f"mask_prob={p}: {rate:.3f} of the tokens were masked"


def test_zero_probability_masks_nothing(make_data):
    data = make_data(SIZES, length=LENGTH)
    for s in make(data.paths, mask_prob=0.0, mask_token_id=None):
        assert s["input_ids"].tolist() == data.tokens[int(s["sample_id"])].tolist()


def test_masking_only_replaces_tokens_and_keeps_labels(make_data):
    data = make_data(SIZES)  # random lengths, some empty
    for s in make(data.paths, mask_prob=0.3):
        original = data.tokens[int(s["sample_id"])].tolist()
        assert s["labels"].tolist() == original
        ids = s["input_ids"].tolist()
        assert len(ids) == len(original)
        assert all(a == b or a == MASK_ID for a, b in zip(ids, original))


def test_masking_needs_a_mask_token(make_data):
    data = make_data([3])
    with pytest.raises(ValueError):
        ShardedTokenDataset(data.paths, mask_prob=0.2)
    with pytest.raises(ValueError):
        ShardedTokenDataset(data.paths, mask_prob=1.5, mask_token_id=MASK_ID)


@pytest.mark.parametrize("num_workers", [0, 3])
def test_reproducible_for_same_seed_and_epoch(make_data, collect, num_workers):
    data = make_data(SIZES, length=LENGTH)
    runs = []
    for _ in range(2):
        ds = make(data.paths)
        ds.set_epoch(1)
        runs.append(masks(collect(ds, num_workers, cap=data.n + 10)))
    assert runs[0] and runs[0] == runs[1]


def test_reproducible_when_an_epoch_is_revisited(make_data):
    data = make_data(SIZES, length=LENGTH)
    ds = make(data.paths)
    first = masks(ds)
    ds.set_epoch(1)
    list(ds)
    ds.set_epoch(0)
    assert masks(ds) == first


def test_differs_between_workers(make_data, collect):
    data = make_data(SIZES, length=LENGTH)
    samples = collect(make(data.paths), 3, cap=data.n + 10)
    assert distinct_masks(samples)


def test_differs_between_ranks(make_data, collect):
    data = make_data(SIZES, length=LENGTH)
    samples = []
    for rank in range(2):
        samples += collect(make(data.paths, rank=rank, world_size=2), 0, cap=data.n + 10)
    assert distinct_masks(samples)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_differs_between_epochs(make_data, collect, num_workers):
    data = make_data(SIZES, length=LENGTH)
    ds = make(data.paths)
    per_epoch = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        per_epoch.append(masks(collect(ds, num_workers, cap=data.n + 10)))
    common = per_epoch[0].keys() & per_epoch[1].keys()  # over the samples both epochs yielded
    assert len(common) >= len(SIZES)
    same = sum(per_epoch[0][i] == per_epoch[1][i] for i in common)
    assert same == 0, f"{same} samples got the same mask in epochs 0 and 1"
    reused = set(per_epoch[0].values()) & set(per_epoch[1].values())
    assert not reused, f"{len(reused)} masks of epoch 0 were drawn again in epoch 1"


def test_differs_between_seeds(make_data):
    data = make_data(SIZES, length=LENGTH)
    a = masks(make(data.paths, seed=1))
    b = masks(make(data.paths, seed=2))
    assert sum(a[i] == b[i] for i in data.ids) == 0


def test_resume_reproduces_the_masks(make_data):
    # Per sample id, over the samples both runs yield: which samples a resume yields is the
    # resume check's; here only whether a resumed sample gets the mask it would have had.
    data = make_data(SIZES, length=LENGTH)
    ref = make(data.paths, mask_prob=0.4)
    ref.set_epoch(1)
    full = masks(ref)
    ds = make(data.paths, mask_prob=0.4)
    ds.set_epoch(1)
    it = iter(ds)
    for _ in range(13):
        next(it)
    state = ds.state_dict()
    resumed = make(data.paths, mask_prob=0.4)
    resumed.load_state_dict(state)
    rest = masks(itertools.islice(iter(resumed), data.n + 10))
    common = rest.keys() & full.keys()
    assert len(common) >= len(SIZES)
    assert {i: rest[i] for i in common} == {i: full[i] for i in common}
