"""Shared fixtures: the toy exercise home and the hostile submissions that go with it."""
from __future__ import annotations

import os
import subprocess
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


def load_fixture_exercise(name: str):
    """A toy exercise from tests/fixtures/home, loaded with MLGRADE_HOME pointing there."""
    from grader.exercises import load_exercise
    previous = os.environ.get("MLGRADE_HOME")
    os.environ["MLGRADE_HOME"] = str(TOY_HOME)
    try:
        return load_exercise(name)
    finally:
        if previous is None:
            os.environ.pop("MLGRADE_HOME", None)
        else:
            os.environ["MLGRADE_HOME"] = previous


def reported_outcomes(report: dict) -> dict[str, str]:
    """What each test reported, also where its verdict was void for tampering (the message keeps it)."""
    prefix = "void (verdict tampering); reported "
    return {t["nodeid"]: t["message"][len(prefix):].split(":")[0] if t["message"].startswith(prefix) else t["outcome"]
            for c in report["checks"] for t in c["tests"]}


def refused(run: subprocess.CompletedProcess, *needles: str) -> str:
    """The one line a refused command printed: exit 2, one line on stderr naming each needle, no traceback."""
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
