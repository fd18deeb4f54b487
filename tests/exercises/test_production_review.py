"""production-review end to end: real gradings of its calibrations, what each view shows, and a
malformed review.json (validate itself runs in test_bundled_exercises.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.exercises import load_exercise
from grader.pipeline import Grader
from grader.report import candidate_view, validate_report
from grader.scrub import HiddenText
from sandbox import available_backends

BACKEND = next(name for name, reason in available_backends().items() if reason is None)
ENV = {k: v for k, v in os.environ.items() if k != "MLGRADE_HOME"}


@pytest.fixture(scope="module")
def exercise():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLGRADE_HOME", raising=False)  # the bundled exercises, not a test home
        yield load_exercise("production-review")


@pytest.fixture(scope="module")
def three_fixes(exercise) -> dict:
    return Grader(BACKEND).grade(exercise, exercise.calibration("three-fixes"))


def _check(report: dict, check_id: str) -> dict:
    return next(c for c in report["checks"] if c["id"] == check_id)


def test_a_patch_that_fixes_three_risks_gets_exactly_those_three(three_fixes) -> None:
    fixes = _check(three_fixes, "fixes")
    passed = {t["nodeid"].split("::")[1] for t in fixes["tests"] if t["outcome"] == "passed"}
    assert passed == {"test_scoring_runs_the_model_in_eval_mode",
                      "test_interrupted_checkpoint_write_keeps_the_previous_file", "test_personal_data_is_not_logged"}
    assert fixes["points"] == pytest.approx(27 * 3 / len(fixes["tests"]), abs=1e-3)


def test_the_grader_view_lists_matched_missed_false_positive_and_unmatched(three_fixes) -> None:
    (section,) = three_fixes["review"]
    assert section["matched"] and section["missed"] and section["false_positives"]
    for row in section["matched"] + section["missed"] + section["false_positives"] + section["unmatched"]:
        assert row["file"].startswith("churnsvc/") and len(row["lines"]) == 2
    assert {m["risk"] for m in section["matched"]}.isdisjoint(m["risk"] for m in section["missed"])


def test_the_candidate_view_counts_tiers_and_names_no_missed_risk(exercise, three_fixes) -> None:
    view = candidate_view(three_fixes, HiddenText.from_exercise(exercise))
    validate_report(view)
    review = _check(view, "review")
    assert review["tests"] == [] and "planted risks found, by tier: " in review["reasons"][0]
    assert set(view["review"][0]) >= {"tiers", "findings", "precision"}
    text = json.dumps(view)
    for missed in three_fixes["review"][0]["missed"]:
        assert missed["risk"] not in text and missed["title"] not in text


def test_a_malformed_review_scores_zero_for_the_review_and_the_patches_are_still_graded(exercise,
                                                                                       tmp_path: Path) -> None:
    submission = tmp_path / "submission"
    shutil.copytree(exercise.calibration("three-fixes"), submission)
    (submission / "review.json").write_text('{"version": 1, "findings": [{"file": "churnsvc/serve.py"}]}')
    run = subprocess.run([sys.executable, "-m", "grader", "grade", "production-review", str(submission), "--json",
                          "--backend", BACKEND], capture_output=True, text=True, env=ENV, timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    review = _check(report, "review")
    assert review["points"] == 0
    assert review["reasons"][0] == "-70.00 pts: review.json: findings.0.lines: Field required (and 3 more)"
    assert _check(report, "fixes")["points"] > 0  # the patches are graded as if the review were fine
    assert [c["id"] for c in report["checks"] if c["points"] < c["max_points"]] == ["review", "review-format", "fixes"]


def test_a_submission_without_review_json_is_refused_with_one_line(exercise, tmp_path: Path) -> None:
    submission = tmp_path / "submission"
    shutil.copytree(exercise.calibration("three-fixes"), submission)
    (submission / "review.json").unlink()
    run = subprocess.run([sys.executable, "-m", "grader", "grade", "production-review", str(submission),
                          "--backend", BACKEND], capture_output=True, text=True, env=ENV, timeout=300)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "review.json" in run.stderr
