"""mlgrade export --format gradescope: results.json per submission, checked against the committed schema
(written from Gradescope's published specification) and for hidden material."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from export_testlib import copy_round, export, mlgrade, reports
from grader.exports.gradescope import HINT, SPEC_URL
from tests.conftest import PROJECT

SCHEMA = json.loads((PROJECT / "grader" / "schemas" / "gradescope-results.schema.json").read_text())
EXPORTED = ["alice-ref", "bob.no-edge", "carol_hostile", "dave-crash", "erin-badzip"]


@pytest.fixture(scope="module")
def exported(round_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("gradescope") / "gs"
    run = export(round_dir, "--format", "gradescope", "--out", out)
    return out, run.stdout


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def test_schema_cites_the_spec_and_refuses_what_it_does_not_document() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SPEC_URL in SCHEMA["description"]
    validator = Draft202012Validator(SCHEMA)
    assert validator.is_valid({"score": 3, "tests": [{"name": "a", "score": 1, "max_score": 2, "visibility": "visible"}]})
    assert validator.is_valid({"tests": [{"score": 1}, {"score": 0, "status": "failed"}]})
    assert not validator.is_valid({"tests": [{"name": "no score anywhere"}]})
    assert not validator.is_valid({"score": 1, "tests": [{"score": 1, "visibility": "secret"}]})
    assert not validator.is_valid({"score": 1, "max_points": 10})
    assert not validator.is_valid({"score": 1, "output_format": "rtf"})


def test_one_valid_results_json_per_graded_or_failed_submission(exported: tuple[Path, str], round_dir: Path) -> None:
    out, stdout = exported
    assert sorted(p.name for p in out.iterdir()) == EXPORTED
    assert "left out (not graded): frank-infra (infra_failure), gina-waiting (pending)" in stdout
    validator = Draft202012Validator(SCHEMA)
    views = reports(round_dir, "candidate")
    for name in EXPORTED:
        results = json.loads((out / name / "results.json").read_text())
        assert list(validator.iter_errors(results)) == []
        assert results["output_format"] == results["test_output_format"] == results["test_name_format"] == "text"
        if name == "erin-badzip":  # a bad archive: no report, a score of 0 and the reason, cleaned
            assert results["score"] == 0 and results["tests"] == []
            assert results["output"].startswith("The submission could not be graded: =cmd|")
            assert results["output"].isprintable() and "<script>x</script>" in results["output"]
            continue
        view = views[name]
        assert results["score"] == view["score"]["points"]
        assert sum(t["score"] for t in results["tests"]) == pytest.approx(view["score"]["points"])
        assert [(t["score"], t["max_score"], t["visibility"], t["status"]) for t in results["tests"]] == [
            (c["points"], c["max_points"], "visible" if c["visibility"] == "public" else "after_published",
             "passed" if c["status"] == "pass" else "failed") for c in view["checks"]]
        for test, check in zip(results["tests"], view["checks"]):
            assert test["name"] == f"{check['title']} ({check['id']})"
            assert all(reason in test["output"] for reason in check["reasons"])  # the candidate view's words


def test_nothing_hidden_reaches_the_export(exported: tuple[Path, str], round_dir: Path) -> None:
    out, _ = exported
    for name, report in reports(round_dir, "grader").items():
        text = (out / name / "results.json").read_text()
        shown = "\n".join(_strings(json.loads(text)))
        hidden = [c for c in report["checks"] if c["visibility"] == "hidden"]
        public = {t["message"] for c in report["checks"] if c["visibility"] == "public" for t in c["tests"]}
        for test in (t for c in hidden for t in c["tests"]):
            assert test["nodeid"] not in shown
            assert test["nodeid"].split("::")[-1].split("[")[0] not in shown  # not even the function's name
            if test["message"] and test["message"] not in public:  # not the runner's words for every test
                assert test["message"] not in shown
        for check in hidden:
            assert all(reason not in shown for reason in check["reasons"])  # grader-view reasons name tests
        assert "stdout_tail" not in text and "integrity" not in text


def test_hostile_text_is_plain_text(exported: tuple[Path, str]) -> None:
    out, _ = exported
    results = json.loads((out / "carol_hostile" / "results.json").read_text())
    strings = _strings(results)
    assert all(c == "\n" or c.isprintable() for s in strings for c in s)  # no control characters, no surrogates
    public = next(t for t in results["tests"] if t["visibility"] == "visible")
    assert "<script>alert(1)</script>" in public["output"] and public["output_format"] == "text"
    assert "\x1b" not in public["output"]


def test_default_folder_and_candidate_view_only(round_dir: Path, tmp_path: Path) -> None:
    folder = copy_round(round_dir, tmp_path)
    export(folder, "--format", "gradescope")
    assert sorted(p.name for p in (folder / "exports" / "gradescope").iterdir()) == EXPORTED
    run = mlgrade("export", folder, "--format", "gradescope", "--view", "grader")
    assert run.returncode == 2 and run.stderr.strip().endswith("the gradescope export is always the candidate view")


def test_the_candidate_views_hints_are_in_the_output(exported: tuple[Path, str], round_dir: Path) -> None:
    """Each hint the candidate view gives for a failed hidden test is in its check's output, as worded there."""
    out, _ = exported
    hinted = 0
    for name, view in reports(round_dir, "candidate").items():
        results = json.loads((out / name / "results.json").read_text())
        for test, check in zip(results["tests"], view["checks"], strict=True):
            assert [line for line in test["output"].splitlines() if line.startswith(HINT)] == [
                HINT + hint for hint in check.get("hints", [])]
            hinted += len(check.get("hints", []))
    assert hinted >= 2  # bob.no-edge fails add-edge, carol_hostile the mean tests
    bob = json.loads((out / "bob.no-edge" / "results.json").read_text())
    assert HINT + "add: keep fractions and signs exactly, do not round to an integer" in bob["tests"][1]["output"]
