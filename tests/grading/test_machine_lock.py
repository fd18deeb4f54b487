"""The machine's grading lock (grader/machine_lock.py), held by real processes: gradings without a timed
check share the machine, a timed one has it alone, and a killed holder never leaves it locked."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader.errors import InfraError
from grader.machine_lock import machine_slot

HOLDER = """import sys, time
from pathlib import Path
from grader.machine_lock import machine_slot
with machine_slot(sys.argv[1] == "exclusive"):
    Path(sys.argv[2], "held").touch()
    while not Path(sys.argv[2], "release").exists():
        time.sleep(0.05)
"""
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLGRADE_LOCK_DIR", str(tmp_path))  # apart from the lock of gradings running beside
    return tmp_path


def hold(lock_dir: Path, mode: str) -> subprocess.Popen:
    """Another process holding the lock in mode until lock_dir/release exists."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, mode, str(lock_dir)], cwd=PROJECT,
                              env=dict(os.environ, MLGRADE_LOCK_DIR=str(lock_dir)))
    deadline = time.monotonic() + 60  # a bound only: the loop ends as soon as the holder has it
    while not (lock_dir / "held").exists():
        assert holder.poll() is None and time.monotonic() < deadline, "the holder never got the lock"
        time.sleep(0.05)
    return holder


def test_gradings_without_a_timed_check_share_the_machine(lock_dir: Path) -> None:
    holder = hold(lock_dir, "shared")
    told: list[str] = []
    try:
        with machine_slot(False, told.append, wait_s=0):
            pass
    finally:
        (lock_dir / "release").touch()
        holder.wait(timeout=60)
    assert told == []


def test_a_timed_grading_waits_for_the_others_and_then_runs_alone(lock_dir: Path) -> None:
    holder = hold(lock_dir, "shared")
    told: list[str] = []
    try:
        with pytest.raises(InfraError, match="not free for a grading within 0.3 s"):
            with machine_slot(True, told.append, wait_s=0.3):
                pytest.fail("a timed grading ran beside another grading")
        assert told == ["waiting for the other gradings on this machine to end: a timed check runs alone"]
    finally:
        (lock_dir / "release").touch()
        holder.wait(timeout=60)
    with machine_slot(True, told.append, wait_s=30):  # the other grading ended: at once
        pass
    assert len(told) == 1


def test_others_wait_while_a_timed_grading_runs(lock_dir: Path) -> None:
    holder = hold(lock_dir, "exclusive")
    told: list[str] = []
    try:
        with pytest.raises(InfraError):
            with machine_slot(False, told.append, wait_s=0.3):
                pytest.fail("a grading ran beside a timed one")
        assert told == ["waiting for a timed grading elsewhere on this machine to end"]
    finally:
        (lock_dir / "release").touch()
        holder.wait(timeout=60)


def test_a_holder_killed_with_sigkill_leaves_the_machine_free(lock_dir: Path) -> None:
    holder = hold(lock_dir, "exclusive")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    with machine_slot(True, wait_s=30):
        pass
