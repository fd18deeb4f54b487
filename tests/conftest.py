"""Shared fixtures: the toy exercise home and the hostile submissions that go with it."""
from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TOY_HOME = FIXTURES / "home"
TOY_SUBMISSIONS = FIXTURES / "submissions" / "toy"
PROJECT = Path(__file__).parent.parent


@pytest.fixture
def toy_home(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point mlgrade at the toy exercise (tests/fixtures/home) instead of the real ones."""
    monkeypatch.setenv("MLGRADE_HOME", str(TOY_HOME))
    return TOY_HOME
