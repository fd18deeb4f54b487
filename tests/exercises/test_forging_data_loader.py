"""The issue-8 forgeries on data-loader, in real sandboxes: each is the rank-only-split calibration
with a payload (tests/fixtures/payloads/data-loader) inserted at the top of loader.py, and none
may score above the calibration alone. The grader view must name the evidence, and show that the
payload did report passes (so the test can fail)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from grader.exercises import load_exercise
from grader.pipeline import Grader
from sandbox import available_backends

PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "payloads" / "data-loader"
FUTURE = "from __future__ import annotations\n"
BACKENDS = [name for name, reason in available_backends().items()
            if name != "process" and (reason is None or os.environ.get("CI") == "true")]
FORGERIES = ["forge-call-and-report", "forge-asserts-and-comparisons", "forge-plugin", "forge-events"]


@pytest.fixture(scope="module", params=BACKENDS)
def graded(request: pytest.FixtureRequest) -> tuple[Grader, float]:
    """A grader on one backend and the score of the calibration the forgeries start from."""
    grader = Grader(request.param)
    base = grader.grade(load_exercise("data-loader"), load_exercise("data-loader").calibration("rank-only-split"))
    assert base["integrity"]["tampering"] is False and base["integrity"]["evidence"] == []
    return grader, base["score"]["percent"]


def with_payload(calibration: Path, payload: Path, dest: Path) -> Path:
    """A copy of calibration whose loader.py runs payload first (after its __future__ import)."""
    shutil.copytree(calibration, dest)
    loader = dest / "loader.py"
    text = loader.read_text()
    loader.write_text(text.replace(FUTURE, FUTURE + "\n" + payload.read_text() + "\n", 1))
    return dest


@pytest.mark.parametrize("forgery", FORGERIES)
def test_forgery_never_pays(graded: tuple[Grader, float], forgery: str, tmp_path: Path) -> None:
    grader, base = graded
    exercise = load_exercise("data-loader")
    submission = with_payload(exercise.calibration("rank-only-split"), PAYLOADS / f"{forgery}.py", tmp_path / forgery)
    report = grader.grade(exercise, submission)
    assert report["score"]["percent"] <= base
    assert report["integrity"]["tampering"] is True
    assert report["warnings"][0].startswith("VERDICT TAMPERING")
    if forgery != "forge-events":  # that one exits before any test runs: nothing is reported at all
        reported_passed = sum("reported passed" in t["message"] for c in report["checks"] for t in c["tests"])
        assert reported_passed > len([t for c in report["checks"] for t in c["tests"]]) // 2
    dynamic = [e for e in report["integrity"]["evidence"] if not e.startswith("static scan")]
    assert dynamic, report["integrity"]  # caught by what ran, not only by reading the code
