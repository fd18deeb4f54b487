"""Every bundled exercise is validated through `mlgrade validate`, on the strongest backend here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grader.exercises import all_exercise_ids, load_exercise
from grader.report import validate_report

ENV = {k: v for k, v in os.environ.items() if k != "MLGRADE_HOME"}


def mlgrade(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, env=ENV,
                          timeout=1800)


def test_there_are_bundled_exercises() -> None:
    assert "data-loader" in all_exercise_ids()


@pytest.mark.parametrize("exercise", all_exercise_ids())
def test_exercise_is_valid(exercise: str) -> None:
    run = mlgrade("validate", exercise)
    line = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 0, run.stdout + run.stderr
    assert line.startswith(exercise + " ") and line.endswith(" valid"), line


def test_grade_json_validates_against_the_schema(tmp_path: Path) -> None:
    exercise = load_exercise("data-loader")
    run = mlgrade("grade", "data-loader", str(exercise.calibration("resume-off-by-one")), "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    validate_report(report)
    resume = next(c for c in report["checks"] if c["id"] == "resume")
    assert resume["status"] != "pass" and resume["reasons"]


def test_data_loader_kit_self_check_passes_on_the_reference_only(tmp_path: Path) -> None:
    exercise = load_exercise("data-loader")
    kit = tmp_path / "kit"
    assert mlgrade("kit", "data-loader", "--out", str(kit)).returncode == 0
    files = {p.relative_to(kit).as_posix() for p in kit.rglob("*") if p.is_file()}
    assert {"README.md", "loader.py", "collate.py", "shards.py", "self_check.py", "tests/conftest.py"} <= files
    assert not any(f.startswith("tests/hidden") or "calibration" in f for f in files)

    def self_check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "self_check.py"], cwd=kit, capture_output=True, text=True,
                              timeout=300, env=dict(ENV, PYTHONDONTWRITEBYTECODE="1"))

    starter = self_check()
    assert starter.returncode == 1 and "failed" in starter.stdout
    for name in exercise.manifest.required_files:
        (kit / name).write_bytes((exercise.reference / name).read_bytes())
    reference = self_check()
    assert reference.returncode == 0, reference.stdout[-2000:]
