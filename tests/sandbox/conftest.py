"""Fixtures for the sandbox tests: real backends, real processes."""
from __future__ import annotations

import os

import pytest

from sandbox.bwrap import BwrapBackend
from sandbox.docker_backend import DockerBackend
from sandbox.process import ProcessBackend
from sandbox_testlib import bwrap_or_skip, docker_or_skip


@pytest.fixture(params=["process", "bwrap", "docker"])
def backend(request: pytest.FixtureRequest) -> ProcessBackend | BwrapBackend | DockerBackend:
    """Each backend in turn (bwrap and docker skipped where they cannot run, outside CI)."""
    if request.param == "docker":
        return docker_or_skip()
    return ProcessBackend() if request.param == "process" else bwrap_or_skip()


@pytest.fixture
def token() -> str:
    """A unique `sleep` duration that marks the processes a test starts, for finding survivors."""
    return f"{1000 + int.from_bytes(os.urandom(3), 'big') / 2**24:.6f}"


