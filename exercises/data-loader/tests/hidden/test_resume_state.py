"""The resume state is plain data: it survives JSON, as a checkpoint of the training loop stores it."""
import itertools
import json

from loader import ShardedTokenDataset

SIZES = [9, 1, 0, 14, 3, 6]  # 33 samples


def test_state_is_plain_data(make_data):
    data = make_data(SIZES)
    ds = ShardedTokenDataset(data.paths, seed=21)
    list(itertools.islice(iter(ds), 5))
    state = ds.state_dict()
    restored = json.loads(json.dumps(state))  # fails on tensors, numpy scalars, ...
    resumed = ShardedTokenDataset(data.paths, seed=21)
    resumed.load_state_dict(restored)  # the same state as plain data must be accepted ...
    again = ShardedTokenDataset(data.paths, seed=21)
    again.load_state_dict(state)
    # ... and mean the same as the original (whether that resume is right is the resume check's)
    assert [int(s["sample_id"]) for s in resumed] == [int(s["sample_id"]) for s in again]
