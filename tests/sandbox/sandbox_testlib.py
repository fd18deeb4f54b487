"""Helpers shared by the sandbox tests (a uniquely named module, unlike conftest)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sandbox.bwrap import BwrapBackend
from sandbox.docker_backend import DockerBackend


def _unavailable(name: str, reason: str) -> None:
    """Skip with the reason, except under CI=true, where every backend must run: fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} must be available in CI: {reason}")
    pytest.skip(f"{name} unavailable: {reason}")


def docker_or_skip(**kwargs: object) -> DockerBackend:
    """A usable DockerBackend (engine answers, image built); skips otherwise, fails under CI=true."""
    backend = DockerBackend(**kwargs)  # type: ignore[arg-type]
    reason = backend.unavailable_reason()
    if reason is not None:
        _unavailable("docker", reason)
    return backend


def bwrap_or_skip(**kwargs: object) -> BwrapBackend:
    """A usable BwrapBackend; skips where bwrap cannot run, except under CI=true where it fails."""
    backend = BwrapBackend(**kwargs)  # type: ignore[arg-type]
    reason = backend.unavailable_reason()
    if reason is not None:
        _unavailable("bwrap", reason)
    return backend


def processes_with(token: str, exclude: tuple[int, ...] = (), program: str | None = None) -> list[int]:
    """Host pids whose command line contains token (sandboxed processes are visible here too),
    optionally only those whose argv[0] is `program`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), *exclude):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline and (program is None or cmdline.split(b"\0")[0] == program.encode()):
            found.append(int(entry.name))
    return found


def wait_gone(token: str, timeout: float = 3.0, exclude: tuple[int, ...] = ()) -> list[int]:
    """Poll until no process carries token; returns the survivors (empty when all are gone)."""
    end = time.monotonic() + timeout
    while (left := processes_with(token, exclude)) and time.monotonic() < end:
        time.sleep(0.05)
    return left


def kill_all(pids: list[int]) -> None:
    """Clean up survivors so a failing test does not leave processes behind."""
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
