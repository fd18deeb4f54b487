"""Fixtures for the sandbox tests: real backends, real processes."""
from __future__ import annotations

import os

import pytest

from sandbox.process import ProcessBackend


@pytest.fixture(params=["process"])
def backend(request: pytest.FixtureRequest) -> ProcessBackend:
    """Each backend in turn."""
    return ProcessBackend()


@pytest.fixture
def token() -> str:
    """A unique `sleep` duration that marks the processes a test starts, for finding survivors."""
    return f"{1000 + int.from_bytes(os.urandom(3), 'big') / 2**24:.6f}"


