"""One lock per machine, so that a timed grading never runs beside another grading.

Every grading holds the machine's lock for its whole run: shared when it has no timed check, exclusive
when it has one (a `measured` kind such as latency). Gradings of any mlgrade process on this machine
(two batches, a batch and a `mlgrade grade`, the Ray engine's workers) therefore overlap freely unless one
of them times something, which then waits for the others and runs alone. A batch already runs its timed
gradings one at a time (grader/batch/run.py); this covers everything else on the machine.

The lock is flock(2) on one file (MLGRADE_LOCK_DIR, default /tmp): the kernel drops it when its holder
exits however it exits, so a killed grader never leaves the machine locked.
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import InfraError

LOCK_NAME = "mlgrade-machine.lock"
WAIT_S = 1800.0  # then the grading fails as an infrastructure error (a batch retries it later)


def lock_path() -> Path:
    return Path(os.environ.get("MLGRADE_LOCK_DIR", "/tmp")) / LOCK_NAME


def _open(path: Path) -> int | None:
    """A read-only descriptor on the lock file (flock needs no write access), created world-readable;
    None where it cannot be opened (then gradings are not kept apart across processes)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError:
        return None


@contextmanager
def machine_slot(exclusive: bool, waiting: Callable[[str], None] = lambda message: None,
                 wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold the machine's lock for the block: exclusive for a grading with a timed check, else shared.
    `waiting` is told once when the lock is not free at once; InfraError when it is still not free
    after wait_s seconds."""
    fd = _open(lock_path())
    if fd is None:
        yield
        return
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    try:
        deadline, told = time.monotonic() + wait_s, False
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InfraError(f"the machine was not free for a grading within {wait_s:g} s "
                                     f"({'other gradings kept running' if exclusive else 'a timed grading kept it'}"
                                     f"; lock {lock_path()})") from None
                if not told:
                    waiting("waiting for the other gradings on this machine to end: a timed check runs alone"
                            if exclusive else "waiting for a timed grading elsewhere on this machine to end")
                    told = True
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # releases the lock
