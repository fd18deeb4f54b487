"""Verdict forging on the toy exercise: real sandboxes, real pytest, payloads of each family.

Each forging submission is the toy's no-edge calibration (80%) plus a payload. Forging must
never pay: the score is at most the calibration's, the report names the evidence, and the
grader view shows that the payload did forge (so these tests can fail).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from grader.pipeline import Grader
from grader.results import TestResult
from grader.report import validate_report
from grader.sentinels import plant, tripped
from sandbox import available_backends
from tests.conftest import TOY_HOME, TOY_SUBMISSIONS, load_fixture_exercise, reported_outcomes

BACKENDS = [name for name, reason in available_backends().items()
            if name != "process" and (reason is None or os.environ.get("CI") == "true")]
BASE_PERCENT = 80.0  # the no-edge calibration, which every forging fixture starts from


@pytest.fixture(scope="module", params=BACKENDS)
def grader(request: pytest.FixtureRequest) -> Grader:
    return Grader(request.param)


@pytest.fixture(scope="module")
def toy():
    return load_fixture_exercise("toy")


@pytest.mark.parametrize("fixture", ["forge-report", "forge-runtest", "forge-events", "forge-plugin"])
def test_forging_never_pays_and_is_flagged(grader: Grader, toy, fixture: str) -> None:
    report = grader.grade(toy, TOY_SUBMISSIONS / fixture)
    validate_report(report)
    assert report["score"]["percent"] <= BASE_PERCENT
    assert report["integrity"]["tampering"] is True
    assert report["warnings"][0].startswith("VERDICT TAMPERING")
    assert all(c["points"] == 0 for c in report["checks"])
    # The payload did forge: the truncating add() fails its float cases, yet they were reported passed.
    assert reported_outcomes(report)["hidden/test_add_edge.py::test_add_edge[1.5-2.25-3.75]"] == "passed"


def test_obfuscated_forgers_are_caught_by_sentinels_not_only_by_the_scan(grader: Grader, toy) -> None:
    for fixture in ("forge-runtest", "forge-events"):
        report = grader.grade(toy, TOY_SUBMISSIONS / fixture)
        dynamic = [e for e in report["integrity"]["evidence"] if not e.startswith("static scan")]
        assert any(e.startswith("sentinel test") for e in dynamic), (fixture, report["integrity"])


def test_comparison_family_never_pays(grader: Grader, toy) -> None:
    report = grader.grade(toy, TOY_SUBMISSIONS / "forge-comparisons")
    assert report["score"]["percent"] <= BASE_PERCENT
    assert report["integrity"]["tampering"] is True


def test_honest_submissions_are_not_flagged(grader: Grader, toy) -> None:
    for path, percent in ((TOY_HOME / "reference" / "toy", 100.0), (toy.calibration("no-edge"), 80.0),
                          (toy.starter, 0.0)):
        report = grader.grade(toy, path)
        assert report["integrity"]["tampering"] is False, report["integrity"]
        assert report["score"]["percent"] == percent
        assert not any(w.startswith("VERDICT") for w in report["warnings"])


def test_import_hang_costs_seconds_not_the_wall_clock(grader: Grader, toy) -> None:
    for fixture in ("import-hang", "import-fork-bomb"):
        report = grader.grade(toy, TOY_SUBMISSIONS / fixture)
        assert report["score"]["percent"] == 0.0
        messages = {t["message"] for c in report["checks"] for t in c["tests"]}
        assert messages == {"not run: collecting the tests (which imports the submission) did not finish within 8 s"}
        run = report["run"]["runs"][0]
        assert not run["timed_out"], run  # ended by the 8 s collection timeout, not by the 60 s wall clock


def test_deleted_results_file_is_graded_not_infrastructure(grader: Grader, toy) -> None:
    report = grader.grade(toy, TOY_SUBMISSIONS / "delete-results")
    assert report["score"]["percent"] == 0.0
    assert any("deleted or emptied" in w for w in report["warnings"])
    assert set(reported_outcomes(report).values()) == {"missing"}


def test_sentinels_take_the_real_names_and_real_tests_run_under_new_ones(tmp_path: Path) -> None:
    toy = load_fixture_exercise("toy")
    expected = ["public/test_add.py::test_add_small", "public/test_add.py::test_add_zero",
                "hidden/test_add_edge.py::test_add_edge[1.5-2.25-3.75]", "hidden/test_add_edge.py::test_add_edge[-4-1--3]",
                "hidden/test_add_edge.py::test_add_edge[0.25-0.5-0.75]",
                "hidden/test_mean.py::test_mean_ints", "hidden/test_mean.py::test_mean_single"]
    planted = plant(toy.tests, tmp_path / "tests", expected, random.Random(3), count=2)
    # Every known name is a sentinel; each real test runs under a new name; two more sentinels have new names.
    assert set(expected) <= planted.sentinels and set(planted.renamed) == set(expected)
    assert len(planted.sentinels) == len(expected) + len([n for n in planted.sentinels if n not in expected])
    assert len(planted.sentinels) - len(expected) >= 2
    assert set(planted.nodeids) == set(expected) | set(planted.renamed.values()) | planted.sentinels
    assert not set(planted.renamed.values()) & planted.sentinels
    for nodeid in planted.nodeids:  # each one is defined in its module, named like its neighbours
        path, _, name = nodeid.partition("::")
        assert name.startswith("test_") and f"def {name.split('[')[0]}(" in (tmp_path / "tests" / path).read_text()
    results = {n: TestResult(n, "failed" if n in planted.sentinels else "passed", 0.1, "") for n in planted.nodeids}
    real = planted.real(results)
    assert set(real) == set(expected) and {r.outcome for r in real.values()} == {"passed"}
    assert all(r.nodeid == n for n, r in real.items())
    assert tripped(planted, {n: r.outcome for n, r in results.items()}) == []
    assert len(tripped(planted, {n: "passed" for n in planted.nodeids})) == len(planted.sentinels)


def test_candidate_view_says_void_without_naming_the_evidence(grader: Grader, toy) -> None:
    from grader.report import TAMPERING_NOTE, candidate_view
    from grader.scrub import HiddenText
    report = grader.grade(toy, TOY_SUBMISSIONS / "forge-events")
    view = candidate_view(report, HiddenText.from_exercise(toy))
    validate_report(view)
    assert "integrity" not in view and view["warnings"][0] == TAMPERING_NOTE
    assert "sentinel" not in str(view) and "sentinel" in str(report)


def test_validate_refuses_a_calibration_that_tampers_without_saying_so(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys
    home = tmp_path / "home"
    shutil.copytree(TOY_HOME, home)
    shutil.copytree(TOY_SUBMISSIONS / "forge-report", home / "exercises" / "toy" / "calibration" / "sneaky")
    manifest = home / "exercises" / "toy" / "exercise.toml"
    manifest.write_text(manifest.read_text() + '\n[[calibration]]\nname = "sneaky"\nband = [0, 100]\n'
                        'flaw = "truncates floats"\nchecks = ["mean"]\n')
    run = subprocess.run([sys.executable, "-m", "grader", "validate", "toy", "--backend", BACKENDS[0]],
                         capture_output=True, text=True, env=dict(os.environ, MLGRADE_HOME=str(home)), timeout=300)
    assert run.returncode == 1
    assert "INVALID: sneaky: verdict-tampering evidence: " in run.stdout, run.stdout


def test_a_fifo_for_results_a_socket_a_sparse_file_and_many_files_are_survived(
        grader: Grader, toy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # this grading's folders only, whatever else runs
    report = grader.grade(toy, TOY_SUBMISSIONS / "odd-out")
    validate_report(report)
    assert set(reported_outcomes(report).values()) == {"missing"}  # the FIFO was never read from
    assert any("deleted or emptied" in w for w in report["warnings"])
    assert list(private.iterdir()) == []  # all of it removed
