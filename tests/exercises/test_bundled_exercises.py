"""Every bundled exercise is validated through `mlgrade validate` on the strongest backend here, and
grades alike on docker and bwrap."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grader.exercises import all_exercise_ids, load_exercise
from grader.pipeline import Grader
from grader.report import validate_report
from grader.validate import validate_exercise
from sandbox.bwrap import BwrapBackend
from sandbox.docker_backend import DockerBackend

ENV = {k: v for k, v in os.environ.items() if k != "MLGRADE_HOME"}


def mlgrade(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, env=ENV,
                          timeout=1800)


def test_there_are_bundled_exercises() -> None:
    assert "data-loader" in all_exercise_ids()


LATENCY_TOLERANCE = 0.15  # of a latency check's max points: timings differ between any two gradings
# Per exercise, the calibrations also graded on bwrap (the reference always is): a sample chosen for what
# differs between backends, so CI stays within its time (all of an exercise's calibrations when it is not
# listed). inference-latency: a Triton kernel that is modelled and timed, and a flagged timer patch (a
# wrong kernel's verdicts are outputs compared on the host, as the reference's are); data-loader: worker processes and per-worker RNG; training-loop: RNG state;
# the others: one flaw in a core part and one that touches the model's mode or the whole service.
PARITY_CALIBRATIONS = {"inference-latency": ["tutorial-kernel", "timer-patch"],
                       "data-loader": ["shared-rng", "rank-only-split"],
                       "training-loop": ["mean-of-means", "no-rng-state"],
                       "evaluation": ["per-batch-mean", "no-eval-mode"],
                       "production-review": ["three-fixes", "linter-only"]}


def _require(backend: Any) -> bool:
    reason = backend.unavailable_reason()
    if reason is not None and os.environ.get("CI") == "true":
        pytest.fail(f"{backend.name} must be available in CI: {reason}")
    return reason is None


def _verdicts(report: dict[str, Any]) -> dict[str, Any]:
    """Everything that must be identical: points and per-test outcomes of every check but latency."""
    exact = [c for c in report["checks"] if c["kind"] != "latency"]
    return {"checks": {c["id"]: (c["points"], c["status"]) for c in exact},
            "tests": {t["nodeid"]: t["outcome"] for c in exact for t in c["tests"]}}


def _timed(report: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {c["id"]: (c["points"], c["max_points"]) for c in report["checks"] if c["kind"] == "latency"}


@pytest.mark.parametrize("exercise_id", all_exercise_ids())
def test_exercise_is_valid_and_grades_alike_on_docker_and_bwrap(monkeypatch, exercise_id: str) -> None:
    """`mlgrade validate` on the strongest backend here (docker in CI), then the reference and the
    calibrations graded again on bwrap must get the same per-test outcomes and points (a latency
    check within LATENCY_TOLERANCE). One test, so each submission is graded once per backend."""
    monkeypatch.delenv("MLGRADE_HOME", raising=False)  # the bundled exercises, not a test home
    exercise = load_exercise(exercise_id)
    docker, bwrap = _require(DockerBackend()), _require(BwrapBackend())
    validation = validate_exercise(Grader("docker" if docker else "auto"), exercise)
    assert validation.valid, validation.line()
    if not (docker and bwrap):
        pytest.skip("validated; docker and bwrap are not both here, so parity is not checked")
    chosen = PARITY_CALIBRATIONS.get(exercise_id)
    known = {c.name for c in exercise.manifest.calibration}
    assert chosen is None or set(chosen) <= known, f"PARITY_CALIBRATIONS names {set(chosen) - known}"
    names = ["reference"] + [c.name for c in exercise.manifest.calibration if chosen is None or c.name in chosen]
    for name in names:
        on_docker = validation.reports[name][0]
        assert on_docker["environment"]["details"]["image_id"].startswith("sha256:")
        path = exercise.reference if name == "reference" else exercise.calibration(name)
        on_bwrap = Grader("bwrap").grade(exercise, path)
        a, b = _verdicts(on_docker), _verdicts(on_bwrap)
        differ = sorted(n for n in a["tests"] if a["tests"][n] != b["tests"].get(n))
        assert a == b, f"{exercise_id}/{name}: docker and bwrap disagree on {differ or a['checks']}"
        timed_docker, timed_bwrap = _timed(on_docker), _timed(on_bwrap)
        assert timed_docker.keys() == timed_bwrap.keys()
        for check, (points, top) in timed_docker.items():
            other = timed_bwrap[check][0]
            assert abs(points - other) <= LATENCY_TOLERANCE * top, (
                f"{exercise_id}/{name}: {check} {points} on docker, {other} on bwrap (of {top})")
        if not timed_docker:
            assert on_docker["score"] == on_bwrap["score"]


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
