"""Gradescope: one autograder results.json per submission, built from the candidate view only.

Format: https://gradescope-autograders.readthedocs.io/en/latest/specs/ ("Output format"), checked
against grader/schemas/gradescope-results.schema.json before anything is written. One Gradescope
test per check (partial credit is per check); hidden checks are shown after publication
(`after_published`) with the candidate view's text, never a hidden test's name or message. Every
output and name is plain text (`*_format: text`): Gradescope renders nothing a candidate wrote.
"""
from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from ..errors import BadInput, InfraError
from ..outdir import one_line
from .rows import Row
from .writing import dumps

SPEC_URL = "https://gradescope-autograders.readthedocs.io/en/latest/specs/"
SCHEMA = "schemas/gradescope-results.schema.json"
RESULTS = "results.json"
NOT_EXPORTED = ("infra_failure", "pending", "running")  # no score to give: Gradescope would show a 0
HIDDEN_NOTE = ("Hidden checks appear once grades are published, with how many of their tests passed; "
               "their tests are not named.")
TEXT = "text"
HINT = "Hint: "  # before each hint the candidate view gives for a failed hidden test


@cache
def _validator():
    from jsonschema import Draft202012Validator
    return Draft202012Validator(json.loads(resources.files("grader").joinpath(SCHEMA).read_text()))


def validate(results: dict[str, Any]) -> None:
    """InfraError (one line) when results does not follow the committed Gradescope schema."""
    from jsonschema.exceptions import best_match
    error = best_match(_validator().iter_errors(results))
    if error is not None:
        raise InfraError(f"results.json does not follow the Gradescope format at {error.json_path}: "
                         f"{one_line(error.message)[:200]}")


def _test(number: int, check: dict[str, Any]) -> dict[str, Any]:
    lines = [f"{check['points']:.2f} / {check['max_points']:g} points"
             + (f"; {check['passed']} of {check['total']} tests passed" if check["total"] else "")]
    return {"name": f"{check['title']} ({check['id']})", "name_format": TEXT, "number": str(number),
            "score": check["points"], "max_score": check["max_points"],
            "status": "passed" if check["status"] == "pass" else "failed",
            "output": "\n".join(lines + check["reasons"] + [HINT + hint for hint in check.get("hints", [])]),
            "output_format": TEXT,
            "tags": [check["kind"], check["visibility"]],
            "visibility": "visible" if check["visibility"] == "public" else "after_published"}


def results(row: Row) -> dict[str, Any]:
    """The results.json of one graded or failed candidate (row holds the candidate view)."""
    head = {"output_format": TEXT, "test_output_format": TEXT, "test_name_format": TEXT,
            "stdout_visibility": "hidden"}
    report = row.report
    if report is None:  # a candidate failure before any grading (a bad archive): intake's words, cleaned
        reason = row.reason or "no reason recorded"  # scrubbed against the hidden material (rows.py)
        return {"score": 0.0, **head, "output": f"The submission could not be graded: {reason}", "tests": [],
                "extra_data": {"candidate": row.candidate, "state": row.entry.state}}
    score = report["score"]
    output = [f"{report['exercise']['title']}: {score['percent']:.1f}% "
              f"({score['points']:.2f} / {score['max_points']:g} points)"]
    if any(check["visibility"] == "hidden" for check in report["checks"]):
        output.append(HIDDEN_NOTE)
    output += report["warnings"]
    return {"score": score["points"], "execution_time": round(report["timing"]["duration_s"]), **head,
            "output": "\n".join(output),
            "tests": [_test(number, check) for number, check in enumerate(report["checks"], 1)],
            "extra_data": {"candidate": row.candidate, "state": row.entry.state, "exercise": report["exercise"]["id"],
                           "exercise_version": report["exercise"]["version_hash"], "percent": score["percent"],
                           "max_points": score["max_points"], "submission_sha256": report["submission"]["sha256"]}}


def _hidden_nodeids(report: dict[str, Any] | None) -> list[str]:
    return [test["nodeid"] for check in (report or {}).get("checks", []) if check["visibility"] == "hidden"
            for test in check["tests"]]


def render(candidate_rows: list[Row], grader_rows: list[Row]) -> tuple[dict[str, bytes], list[Row]]:
    """(files, left out): <candidate>/results.json for every graded or failed candidate; the rows of
    those not exported (an infrastructure failure, not graded yet). Each file is checked against the
    schema and for the grader view's hidden test names (defence in depth: the candidate view has none)."""
    files, left_out = {}, []
    for row, grader in zip(candidate_rows, grader_rows, strict=True):
        if row.entry.state in NOT_EXPORTED:
            left_out.append(row)
            continue
        if row.report is None and grader.report is not None:
            raise BadInput(f"candidate {row.candidate}: candidate-view report is missing (the grader view is "
                           "there); the Gradescope export shows only the candidate view")
        data = results(row)
        validate(data)
        text = dumps(data, indent=2)
        leaked = [nodeid for nodeid in _hidden_nodeids(grader.report) if json.dumps(nodeid)[1:-1] in text]
        if leaked:
            raise InfraError(f"candidate {row.candidate}: the candidate view names hidden test {leaked[0]!r}; "
                             "nothing exported")
        files[f"{row.candidate}/{RESULTS}"] = text.encode("ascii")
    return files, left_out
