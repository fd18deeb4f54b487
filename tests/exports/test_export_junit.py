"""mlgrade export --format junit: one JUnit XML per submission, read back with junitparser."""
from __future__ import annotations

from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from export_testlib import BAD_ARCHIVE_REASON, INFRA_REASON, export, reports

EXPORTED = ["alice-ref", "bob.no-edge", "carol_hostile", "dave-crash", "erin-badzip", "frank-infra"]
RESULT = {"passed": None, "failed": Failure, "skipped": Skipped, "error": Error, "timeout": Error,
          "crashed": Error, "missing": Error}


@pytest.fixture(scope="module")
def exported(round_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("junit") / "junit"
    run = export(round_dir, "--format", "junit", "--out", out)
    assert "6 of 7 candidates" in run.stdout and "gina-waiting (pending)" in run.stdout
    return out


def _case_result(case) -> type | None:
    results = case.result
    assert len(results) <= 1
    return type(results[0]) if results else None


def test_counts_and_outcomes_equal_report_json(exported: Path, round_dir: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == [f"{n}.xml" for n in EXPORTED]
    for name, report in reports(round_dir, "grader").items():
        xml = JUnitXml.fromfile(str(exported / f"{name}.xml"))
        assert xml.name == name
        suites = list(xml)
        assert [s.name for s in suites] == [c["id"] for c in report["checks"]]
        for suite, check in zip(suites, suites and report["checks"]):
            cases = list(suite)
            assert suite.tests == len(cases) == len(check["tests"]) == check["total"]
            assert sum(case.is_passed for case in cases) == check["passed"]
            assert [_case_result(case) for case in cases] == [RESULT[t["outcome"]] for t in check["tests"]]
            assert [f"{case.classname.replace('.', '/')}.py::{case.name}" for case in cases] == \
                [t["nodeid"] for t in check["tests"]]
            assert (suite.failures, suite.errors, suite.skipped) == (
                sum(t["outcome"] == "failed" for t in check["tests"]),
                sum(RESULT[t["outcome"]] is Error for t in check["tests"]),
                sum(t["outcome"] == "skipped" for t in check["tests"]))
            properties = {p.name: p.value for p in suite.properties()}
            assert float(properties["points"]) == check["points"] and properties["status"] == check["status"]
        assert xml.tests == sum(c["total"] for c in report["checks"])


def test_hostile_messages_are_escaped_not_dropped(exported: Path, round_dir: Path) -> None:
    text = (exported / "carol_hostile.xml").read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text
    xml = JUnitXml.fromfile(str(exported / "carol_hostile.xml"))
    failures = [case.result[0] for suite in xml for case in suite if case.result]
    assert failures and all("<script>alert(1)</script> ]]> &" in f.text for f in failures)
    assert all("\\x1b[31m\\ud800" in f.text and "\\x00\\x01\\x08\\x0b\\x0c" in f.text for f in failures)
    assert all(f.message.startswith(("AssertionError: =HYPERLINK", "ValueError: @SUM")) for f in failures)


@pytest.mark.parametrize("name,result,reason", [("erin-badzip", Failure, BAD_ARCHIVE_REASON),
                                                ("frank-infra", Error, INFRA_REASON)])
def test_a_failure_without_a_report_is_one_test_case(exported: Path, name: str, result: type, reason: str) -> None:
    xml = JUnitXml.fromfile(str(exported / f"{name}.xml"))
    [suite] = list(xml)
    [case] = list(suite)
    [found] = case.result
    assert isinstance(found, result) and found.type == ("candidate_failure" if result is Failure else "infra_failure")
    escaped = reason.replace("\x1b", "\\x1b").replace("\x00", "\\x00").replace("\x07", "\\x07")
    assert found.text == escaped and (xml.failures, xml.errors) == ((1, 0) if result is Failure else (0, 1))
