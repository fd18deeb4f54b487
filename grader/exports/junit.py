"""JUnit XML: one file per submission for the grading team's CI dashboards (grader view).

<testsuites name=candidate> holds a <testsuite> per check (name = check id; properties: title,
kind, visibility, points, max_points, status; <system-out>: the reasons points were lost) and a
<testcase> per test: classname from the node id's file ("hidden/test_mean.py" ->
"hidden.test_mean"), name the rest of the node id. Outcomes: failed -> <failure>; error, timeout,
crashed, missing -> <error type=outcome>; skipped -> <skipped>. A check without tests is one test
case named after the check. Written with the standard library's ElementTree, which escapes
markup; characters XML 1.0 cannot hold at all (most control characters, lone surrogates,
U+FFFE/U+FFFF) are replaced by visible escapes first.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from ..errors import InfraError
from .rows import Row

NOT_EXPORTED = ("pending", "running")  # not final yet
MESSAGE_CHARS = 200  # the message attribute: the first line, shortened; the element holds it all
# Everything XML 1.0 allows: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """text with every character XML 1.0 cannot hold replaced by a visible escape (\\x1b, \\ud800)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def _element(parent: ET.Element, tag: str, text: str | None = None, **attributes: Any) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: xml_text(str(v)) for k, v in attributes.items()})
    if text:
        element.text = xml_text(text)
    return element


def _names(nodeid: str) -> tuple[str, str]:
    """(classname, name) of a node id: "public/test_add.py::test_x[1]" -> ("public.test_add", "test_x[1]")."""
    where, _, name = nodeid.partition("::")
    classname = where.removesuffix(".py").replace("/", ".")
    return classname, name or where


def _tag(outcome: str) -> str | None:
    """The JUnit element of a test outcome; None for a pass."""
    return None if outcome == "passed" else "failure" if outcome == "failed" else \
        "skipped" if outcome == "skipped" else "error"  # error, timeout, crashed, missing


def _result(case: ET.Element, tag: str | None, outcome: str, message: str) -> None:
    if tag is not None:
        first = message.strip().splitlines()[0] if message.strip() else outcome
        _element(case, tag, message, message=first[:MESSAGE_CHARS], type=outcome)


def _suite(root: ET.Element, check: dict[str, Any], timestamp: str) -> None:
    tests = check["tests"]
    tags = [_tag(test["outcome"]) for test in tests] or [None if check["status"] == "pass" else "failure"]
    suite = _element(root, "testsuite", name=check["id"], tests=len(tags), failures=tags.count("failure"),
                     errors=tags.count("error"), skipped=tags.count("skipped"),
                     time=f"{sum(t['duration_s'] for t in tests):.4f}", timestamp=timestamp)
    properties = _element(suite, "properties")
    for key in ("title", "kind", "visibility", "points", "max_points", "status"):
        _element(properties, "property", name=key, value=check[key])
    if tests:
        for test, tag in zip(tests, tags):
            classname, name = _names(test["nodeid"])
            case = _element(suite, "testcase", classname=classname, name=name, time=f"{test['duration_s']:.4f}")
            _result(case, tag, test["outcome"], test["message"])
    else:  # a check with nothing to list: the check itself is the test case
        case = _element(suite, "testcase", classname=check["id"], name=check["id"], time="0")
        _result(case, tags[0], check["status"], "\n".join(check["reasons"]))
    if check["reasons"]:
        _element(suite, "system-out", "\n".join(check["reasons"]))


def document(row: Row) -> ET.Element:
    """The <testsuites> of one candidate (grader view); without a report, one test case for the grading."""
    root = ET.Element("testsuites", {"name": row.candidate})
    report = row.report
    if report is None:
        suite = _element(root, "testsuite", name="grading", tests=1, failures=int(row.entry.state != "infra_failure"),
                         errors=int(row.entry.state == "infra_failure"), skipped=0, time="0")
        case = _element(suite, "testcase", classname="mlgrade", name="grading", time="0")
        tag = "error" if row.entry.state == "infra_failure" else "failure"
        _result(case, tag, row.entry.state, row.entry.reason or row.entry.state)
    else:
        for check in report["checks"]:
            _suite(root, check, report["timing"]["started_at"])
    totals = {key: sum(int(suite.get(key, 0)) for suite in root) for key in ("tests", "failures", "errors", "skipped")}
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{report['timing']['duration_s']:.3f}" if report is not None else "0")
    return root


def render(rows: list[Row]) -> tuple[dict[str, bytes], list[Row]]:
    """(files, left out): <candidate>.xml for every candidate whose state is final; those not yet graded."""
    files, left_out = {}, []
    for row in rows:
        if row.entry.state in NOT_EXPORTED:
            left_out.append(row)
            continue
        root = document(row)
        ET.indent(root)
        data = ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
        try:
            ET.fromstring(data)  # well-formed, whatever the report held
        except ET.ParseError as exc:
            raise InfraError(f"candidate {row.candidate}: the JUnit XML is not well-formed ({exc}); nothing exported")
        files[f"{row.candidate}.xml"] = data
    return files, left_out
