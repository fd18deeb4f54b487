"""Partial credit per check, a reason per lost share, missing results count as failures."""
from __future__ import annotations

from grader.manifest import load_manifest
from grader.results import RunResults, TestResult
from grader.scoring import percent, score_checks
from tests.conftest import TOY_HOME

MANIFEST = load_manifest(TOY_HOME / "exercises" / "toy" / "exercise.toml")
EXPECTED = ["public/test_add.py::test_add_small", "public/test_add.py::test_add_zero",
            "hidden/test_add_edge.py::test_add_edge[1.5-2.25-3.75]", "hidden/test_add_edge.py::test_add_edge[-4-1--3]",
            "hidden/test_add_edge.py::test_add_edge[0.25-0.5-0.75]",
            "hidden/test_mean.py::test_mean_ints", "hidden/test_mean.py::test_mean_single"]


def _results(outcomes: dict[str, str]) -> RunResults:
    return RunResults(tests={n: TestResult(n, o, 0.1, "boom" if o != "passed" else "") for n, o in outcomes.items()})


def test_all_passed_is_full_marks() -> None:
    scores = score_checks(MANIFEST, EXPECTED, _results({n: "passed" for n in EXPECTED}))
    assert percent(scores) == 100.0
    assert all(s.status == "pass" and s.reasons() == [] for s in scores)


def test_partial_credit_and_reasons() -> None:
    outcomes = {n: "passed" for n in EXPECTED}
    outcomes["hidden/test_add_edge.py::test_add_edge[1.5-2.25-3.75]"] = "failed"
    outcomes["hidden/test_mean.py::test_mean_ints"] = "timeout"
    by_id = {s.check.id: s for s in score_checks(MANIFEST, EXPECTED, _results(outcomes))}
    assert by_id["add-edge"].earned == 2.0 and by_id["add-edge"].status == "partial"
    assert by_id["mean"].earned == 2.5
    assert by_id["add-edge"].reasons() == ["-1.00 pts: hidden/test_add_edge.py::test_add_edge[1.5-2.25-3.75]: failed: boom"]
    assert by_id["mean"].reasons() == ["-2.50 pts: hidden/test_mean.py::test_mean_ints: timeout: boom"]
    assert percent(list(by_id.values())) == 65.0


def test_missing_results_count_as_failed_and_unknown_ones_are_ignored() -> None:
    outcomes = {n: "passed" for n in EXPECTED[:2]} | {"hidden/test_mean.py::test_invented": "passed"}
    scores = score_checks(MANIFEST, EXPECTED, _results(outcomes))
    assert percent(scores) == 20.0
    mean = scores[2]
    assert mean.status == "fail" and {t.outcome for t in mean.tests} == {"missing"}
    assert len(mean.tests) == 2


def test_skipped_earns_nothing() -> None:
    outcomes = {n: "skipped" if "mean" in n else "passed" for n in EXPECTED}
    assert percent(score_checks(MANIFEST, EXPECTED, _results(outcomes))) == 50.0


def test_all_or_nothing_check_needs_every_test() -> None:
    strict = MANIFEST.model_copy(update={"checks": [
        c.model_copy(update={"partial_credit": False}) if c.id == "add-edge" else c for c in MANIFEST.checks]})
    outcomes = {n: "passed" for n in EXPECTED}
    outcomes["hidden/test_add_edge.py::test_add_edge[-4-1--3]"] = "failed"
    by_id = {s.check.id: s for s in score_checks(strict, EXPECTED, _results(outcomes))}
    assert by_id["add-edge"].earned == 0.0 and by_id["add-edge"].status == "fail"
    assert by_id["add-edge"].reasons() == [
        "-3.00 pts: all-or-nothing check, 1 of 3 tests did not pass",
        "-0.00 pts: hidden/test_add_edge.py::test_add_edge[-4-1--3]: failed: boom"]
    assert percent(list(by_id.values())) == 70.0
    outcomes["hidden/test_add_edge.py::test_add_edge[-4-1--3]"] = "passed"
    assert percent(score_checks(strict, EXPECTED, _results(outcomes))) == 100.0


def test_a_pytest_check_that_requires_another_scores_zero_until_that_one_passes_fully() -> None:
    from grader.checks.pytest_check import gated
    gate = MANIFEST.model_copy(update={"checks": [
        c.model_copy(update={"requires": ["add-public"]}) if c.id == "mean" else c for c in MANIFEST.checks]})
    outcomes = {n: "passed" for n in EXPECTED} | {"public/test_add.py::test_add_zero": "failed"}
    scores = {s.check.id: s for s in score_checks(gate, EXPECTED, _results(outcomes))}
    mean = gated(scores["mean"].check, scores["mean"], scores)
    assert mean.earned == 0 and mean.passed == 2  # its tests still say what passed
    assert mean.reasons() == ["-5.00 pts: counts only when add-public passes fully, and it did not"]
    outcomes["public/test_add.py::test_add_zero"] = "passed"
    scores = {s.check.id: s for s in score_checks(gate, EXPECTED, _results(outcomes))}
    assert gated(scores["mean"].check, scores["mean"], scores).earned == 5
