"""save_checkpoint / load_checkpoint: atomic replacement of the checkpoint file.

Crashes are simulated by patching torch.save (it writes part of the file, then raises) and
os.replace (it raises) for the duration of one call."""
import os
import random

import pytest
import torch

from checkpoint import load_checkpoint, save_checkpoint


class Crash(RuntimeError):
    pass


def state(version: int) -> dict:
    gen = torch.Generator().manual_seed(version)
    return {"model": {"w": torch.randn(64, 64, generator=gen), "b": torch.randn(64, generator=gen)},
            "optimizer": {"state": {0: {"step": torch.tensor(float(version))}}, "param_groups": [{"lr": 0.1}]},
            "rng": {"torch": torch.randint(0, 256, (5056,), dtype=torch.uint8, generator=gen),
                    "python": random.Random(version).getstate()},
            "step": version, "micro": 3 * version, "loss": 0.25 * version, "grads": None, "tags": ("a", 1)}


def assert_same(a, b):
    assert type(a) is type(b) or (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)))
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def partial_save(obj, f, *args, **kwargs):
    """A torch.save that dies after writing the first bytes of the file."""
    junk = b"PK\x03\x04 partial checkpoint" * 64
    if isinstance(f, (str, bytes, os.PathLike)):
        with open(f, "wb") as out:
            out.write(junk)
    else:
        f.write(junk)
    raise Crash("killed while writing")


def failing_replace(*args, **kwargs):
    raise Crash("killed before the rename")


def test_round_trip_of_a_training_state(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, state(1))
    assert_same(load_checkpoint(path), state(1))


def test_saving_again_replaces_the_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, state(1))
    save_checkpoint(str(path), state(2))
    assert_same(load_checkpoint(str(path)), state(2))


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, state(1))
    with monkeypatch.context() as m:
        m.setattr(torch, "save", partial_save)
        with pytest.raises(Crash):
            save_checkpoint(path, state(2))
    assert_same(load_checkpoint(path), state(1))


def test_crash_while_writing_the_first_checkpoint_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    with monkeypatch.context() as m:
        m.setattr(torch, "save", partial_save)
        with pytest.raises(Crash):
            save_checkpoint(path, state(1))
    assert not path.exists()


def test_crash_before_the_rename_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, state(1))
    with monkeypatch.context() as m:
        m.setattr(os, "replace", failing_replace)
        with pytest.raises(Crash):
            save_checkpoint(path, state(2))
    assert_same(load_checkpoint(path), state(1))


def test_failed_saves_leave_no_temporary_files(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, state(1))
    with monkeypatch.context() as m:
        m.setattr(torch, "save", partial_save)
        with pytest.raises(Crash):
            save_checkpoint(path, state(2))
    with monkeypatch.context() as m:
        m.setattr(os, "replace", failing_replace)
        with pytest.raises(Crash):
            save_checkpoint(path, state(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_temporary_file_in_the_same_folder_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    events = []
    real_fsync, real_fdatasync, real_replace = os.fsync, os.fdatasync, os.replace

    def fsync(fd):
        events.append(("fsync",))
        return real_fsync(fd)

    def fdatasync(fd):
        events.append(("fsync",))
        return real_fdatasync(fd)

    def replace(src, dst, *args, **kwargs):
        events.append(("replace", os.path.realpath(os.fspath(src)), os.path.realpath(os.fspath(dst))))
        return real_replace(src, dst, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", fsync)
        m.setattr(os, "fdatasync", fdatasync)
        m.setattr(os, "replace", replace)
        save_checkpoint(path, state(1))
    renames = [e for e in events if e[0] == "replace"]
    assert len(renames) == 1, events
    _, src, dst = renames[0]
    assert dst == os.path.realpath(path) and os.path.dirname(src) == os.path.realpath(tmp_path)
    assert ("fsync",) in events[: events.index(renames[0])], events
    assert_same(load_checkpoint(path), state(1))
