"""The local engine: up to `slots` worker processes on this machine, each running `grade_one`.

Workers are plain interpreters (`python -m grader.batch.engine_local FD PARENT_PID`) talking to the
batch over a socket pair with multiprocessing's Connection (pickled GradeTask in, GradeOutcome out),
in their own session so a terminal's Ctrl-C reaches only the batch, which then stops them. Each
worker lives for many tasks (its Grader keeps the exercise's collected tests).

Tied to the batch's life: a worker asks the kernel for SIGTERM when its parent dies
(PR_SET_PDEATHSIG), and SIGTERM raises KeyboardInterrupt, the clean-up path on which the grader
removes its sandbox (container, bwrap tree, temporary folders). So a `kill -9` of the batch leaves
no worker and no sandbox running. A worker that dies mid-task (killed, out of memory) is seen as
end-of-file on its connection and reported as an infra_failure outcome; the next task gets a new
worker.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import IO, NoReturn

from .tasks import GradeOutcome, GradeTask

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 60.0  # a stopping worker removes its sandbox (a container takes a few seconds); then SIGKILL


@dataclass
class _Worker:
    proc: subprocess.Popen
    conn: Connection
    log: IO[bytes] | None
    task: GradeTask | None = None
    started: float = 0.0


def _signal_name(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class LocalEngine:
    """Engine (grader/batch/tasks.py) on local worker processes."""

    def __init__(self, slots: int, log_dir: Path | None = None) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.log_dir = log_dir
        self._workers: list[_Worker] = []
        self._spawned = 0

    # -- workers ---------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent, child = socket.socketpair()
        self._spawned += 1
        log = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.log_dir / f"worker-{self._spawned}.log", "ab")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "grader.batch.engine_local", str(child.fileno()), str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL,
                pass_fds=(child.fileno(),), start_new_session=True)
        finally:
            child.close()
        return _Worker(proc=proc, conn=Connection(parent.detach()), log=log)

    def _retire(self, worker: _Worker) -> None:
        worker.conn.close()
        if worker.log is not None:
            worker.log.close()
        self._workers.remove(worker)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and diagnostics)."""
        return [w.proc.pid for w in self._workers if w.proc.poll() is None]

    # -- Engine ----------------------------------------------------------------------------
    def start(self, task: GradeTask) -> None:
        for worker in [w for w in self._workers if w.task is None and w.proc.poll() is not None]:
            self._retire(worker)  # died while idle
        idle = next((w for w in self._workers if w.task is None), None)
        if idle is None:
            if len(self._workers) >= self.slots:
                raise RuntimeError(f"all {self.slots} slots are busy")
            idle = self._spawn()
            self._workers.append(idle)
        idle.task, idle.started = task, time.monotonic()
        try:
            idle.conn.send(task)
        except OSError:  # it died between the check and the send: finished() reports it
            pass

    def finished(self, timeout: float) -> list[GradeOutcome]:
        busy = {w.conn: w for w in self._workers if w.task is not None}
        if not busy:
            time.sleep(max(0.0, timeout))
            return []
        outcomes: list[GradeOutcome] = []
        for conn in wait(list(busy), timeout=max(0.0, timeout)):
            worker = busy[conn]  # type: ignore[index]
            task = worker.task
            assert task is not None
            try:
                outcome = conn.recv()  # type: ignore[union-attr]
            except (EOFError, OSError):
                outcomes.append(self._died(worker, task))
                continue
            worker.task = None
            outcomes.append(outcome)
        return outcomes

    def _died(self, worker: _Worker, task: GradeTask) -> GradeOutcome:
        try:
            code = worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            code = worker.proc.wait()
        self._retire(worker)
        return GradeOutcome(candidate=task.candidate, key=task.key, attempt=task.attempt, result="infra_failure",
                            reason=f"the grading worker (pid {worker.proc.pid}) died ({_signal_name(code)})",
                            percent=None, duration_s=round(time.monotonic() - worker.started, 3))

    def close(self) -> None:
        """Idle workers see their connection close and exit; busy ones get SIGTERM (their grader
        removes its sandbox), then SIGKILL after STOP_GRACE_S."""
        for worker in self._workers:
            worker.conn.close()
            if worker.task is not None and worker.proc.poll() is None:
                worker.proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in self._workers:
            try:
                worker.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
            if worker.log is not None:
                worker.log.close()
        self._workers.clear()


# -- the worker process ------------------------------------------------------------------------

def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt  # the grader's clean-up path, as in grader/cli.py


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """Ask the kernel for sig when the parent process dies; exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(0)


def worker_main(fd: int, parent: int) -> int:
    signal.signal(signal.SIGTERM, _raise_interrupt)
    die_with_parent(parent)
    from .worker import grade_one  # after the death signal is armed: imports take a second
    conn = Connection(fd)
    try:
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return 0  # the batch closed the connection (or died)
            conn.send(grade_one(task))
    except KeyboardInterrupt:
        return 130
    except (BrokenPipeError, ConnectionResetError):
        return 0


if __name__ == "__main__":
    sys.exit(worker_main(int(sys.argv[1]), int(sys.argv[2])))
