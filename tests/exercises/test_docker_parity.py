"""Docker and bwrap grade alike: every bundled exercise's reference and calibration submissions
get the same per-test outcomes and the same points on both backends.

Latency checks are the one exception: their points come from timings, which differ between
any two gradings, on one backend as on two. For them the points must agree within
LATENCY_TOLERANCE of the check's maximum; every other check must agree exactly.

Skipped where docker or bwrap cannot run, except under CI=true (fails).
"""
from __future__ import annotations

import os
from typing import Any

import pytest

from grader.exercises import all_exercise_ids, load_exercise
from grader.pipeline import Grader
from sandbox.bwrap import BwrapBackend
from sandbox.docker_backend import DockerBackend



def _require(backend: Any) -> None:
    reason = backend.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{backend.name} must be available in CI: {reason}")
        pytest.skip(f"{backend.name} unavailable: {reason}")


@pytest.fixture(scope="module")
def graders(monkeypatch_module) -> dict[str, Grader]:
    _require(DockerBackend())
    _require(BwrapBackend())
    return {"docker": Grader("docker"), "bwrap": Grader("bwrap")}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    mp.delenv("MLGRADE_HOME", raising=False)  # the bundled exercises, not a test home
    yield mp
    mp.undo()


LATENCY_TOLERANCE = 0.15  # of a latency check's max points
# Per exercise, the calibrations graded on both backends: all of them, except where an exercise's
# gradings are slow (~35 s each); there one per check kind that matters for parity (a Triton
# kernel that is modelled and timed, a wrong kernel that blocks both, a flagged timer patch).
PARITY_CALIBRATIONS = {"inference-latency": ["tutorial-kernel", "triton-tail-bug", "timer-patch"]}


def _verdicts(report: dict[str, Any]) -> dict[str, Any]:
    """Everything that must be identical: points and per-test outcomes of every check but latency."""
    exact = [c for c in report["checks"] if c["kind"] != "latency"]
    return {
        "checks": {c["id"]: (c["points"], c["status"]) for c in exact},
        "tests": {t["nodeid"]: t["outcome"] for c in exact for t in c["tests"]},
    }


def _timed(report: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {c["id"]: (c["points"], c["max_points"]) for c in report["checks"] if c["kind"] == "latency"}


@pytest.mark.parametrize("exercise_id", all_exercise_ids())
def test_reference_and_calibrations_score_identically_on_docker_and_bwrap(graders, exercise_id: str) -> None:
    exercise = load_exercise(exercise_id)
    if exercise.manifest.device == "cuda":
        pytest.skip(f"{exercise_id} needs a GPU; none where these tests run")
    submissions = [("reference", exercise.reference)]
    chosen = PARITY_CALIBRATIONS.get(exercise_id)
    submissions += [(c.name, exercise.calibration(c.name)) for c in exercise.manifest.calibration
                    if chosen is None or c.name in chosen]
    for name, path in submissions:
        seen = {backend: grader.grade(exercise, path) for backend, grader in graders.items()}
        docker, bwrap = (_verdicts(seen[b]) for b in ("docker", "bwrap"))
        differ = sorted(n for n in docker["tests"] if docker["tests"][n] != bwrap["tests"].get(n))
        assert docker == bwrap, f"{exercise_id}/{name}: docker and bwrap disagree on {differ or docker['checks']}"
        timed_docker, timed_bwrap = _timed(seen["docker"]), _timed(seen["bwrap"])
        assert timed_docker.keys() == timed_bwrap.keys()
        for check, (points, top) in timed_docker.items():
            other = timed_bwrap[check][0]
            assert abs(points - other) <= LATENCY_TOLERANCE * top, (
                f"{exercise_id}/{name}: {check} {points} on docker, {other} on bwrap (of {top})")
        if not timed_docker:
            assert seen["docker"]["score"] == seen["bwrap"]["score"]
        assert seen["docker"]["environment"]["details"]["image_id"].startswith("sha256:")
