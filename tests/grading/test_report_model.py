"""The report's pydantic models (grader/report_model.py) and the schema generated from them."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import ValidationError
from pydantic import BaseModel
from pydantic import ValidationError as ModelError

from grader import report_model
from grader.pipeline import Grader
from grader.report import candidate_view, validate_report
from grader.report_model import Report, render_schema
from tests.conftest import load_fixture_exercise


@pytest.fixture(scope="module")
def toy_report() -> dict[str, Any]:
    """A real grader-view report: the toy exercise's calibration that loses points (process backend: the
    code graded is the exercise's own, so no isolation is needed)."""
    toy = load_fixture_exercise("toy")
    return Grader("process").grade(toy, toy.calibration("no-edge"))


def test_committed_schema_is_the_one_the_models_generate() -> None:
    committed = report_model.SCHEMA_FILE.read_text()
    assert committed == render_schema(), "the report schema is out of date: run python -m grader.report_model"
    schema = json.loads(committed)
    assert (schema["$schema"], schema["$id"], schema["title"]) == (
        "https://json-schema.org/draft/2020-12/schema", "https://mlgrade.dev/schemas/report-1.schema.json",
        "mlgrade report, schema version 1")
    assert report_model.main(["--check"]) == 0


def test_schema_rendering_is_stable() -> None:
    assert render_schema() == render_schema()
    assert list(json.loads(render_schema())["$defs"]) == sorted(json.loads(render_schema())["$defs"])


def test_real_toy_report_validates_in_both_views(toy_report: dict[str, Any]) -> None:
    assert 0 < toy_report["score"]["percent"] < 100 and toy_report["integrity"]["tampering"] is False
    validate_report(toy_report)
    Report.model_validate(toy_report)
    view = candidate_view(toy_report)
    assert "integrity" not in view and "stdout_tail" not in view["run"]
    validate_report(view)
    Report.model_validate(view)


def _with_sections(report: dict[str, Any]) -> dict[str, Any]:
    """The toy report with every optional section filled in (shapes as grader/checks write them)."""
    report = copy.deepcopy(report)
    report["latency"] = [{
        "check": "latency", "device": "cpu", "method": "process CPU time per call", "copy_gbs": 10.0, "flags": [],
        "cases": [{"case": "small", "baseline_p50_us": 10.0, "candidate_p50_us": 5.0, "candidate_p90_us": 6.0,
                   "candidate_p99_us": 7.0, "reference_p50_us": 4.0, "baseline_clean_p50_us": 10.0, "rounds": 20,
                   "speedup": 2.0, "speedup_ci": [1.9, 2.1], "reference_speedup": 2.5, "gbs": 1.0,
                   "pct_of_copy_bandwidth": None, "warmup_s": {"baseline": 0.1, "candidate": None},
                   "warmup_calls": {"baseline": 3}}]}]
    report["model"] = [{
        "check": "gpu-model", "target": "H100", "label": "modelled, not measured", "entry": None, "flags": [],
        "cases": [{"case": "small", "modelled_us": 10.0, "reference_modelled_us": 5.0, "relative": 0.5, "kernels": 2,
                   "syncs": 0, "traffic_mb": 1.0, "spill_mb": 0.0, "minimal_mb": 1.0,
                   "parts": [{"kernel": "softmax_kernel", "us": 1.0, "regs": 32}]}]}]
    report["integrity"]["scan"] = [{"file": "solution.py", "line": 3, "rule": "imports-pytest", "severity": "review",
                                    "excerpt": "import pytest"}]
    return report


def test_every_optional_section_validates(toy_report: dict[str, Any]) -> None:
    report = _with_sections(toy_report)
    validate_report(report)
    Report.model_validate(report)
    validate_report(candidate_view(report))


def _set(path: tuple, value: Any):
    def change(report: dict[str, Any]) -> None:
        *parents, key = path
        for step in parents:
            report = report[step]
        report[key] = value
    return change


def _drop(path: tuple):
    def change(report: dict[str, Any]) -> None:
        *parents, key = path
        for step in parents:
            report = report[step]
        del report[key]
    return change


REFUSED = {
    "unknown top-level key": _set(("extra",), 1),
    "unknown key in a check": _set(("checks", 0, "weight"), 1.0),
    "unknown key in a test": _set(("checks", 0, "tests", 0, "stdout"), ""),
    "unknown key in a latency case": _set(("latency", 0, "cases", 0, "p42_us"), 1.0),
    "wrong view": _set(("view",), "admin"),
    "wrong schema": _set(("schema",), "mlgrade.report/2"),
    "wrong check status": _set(("checks", 0, "status"), "maybe"),
    "wrong test outcome": _set(("checks", 0, "tests", 0, "outcome"), "xfailed"),
    "wrong visibility": _set(("checks", 0, "visibility"), "secret"),
    "wrong device": _set(("environment", "device"), "tpu"),
    "wrong scan severity": _set(("integrity", "scan", 0, "severity"), "info"),
    "wrong model label": _set(("model", 0, "label"), "measured"),
    "missing top-level key": _drop(("run",)),
    "missing score percent": _drop(("score", "percent")),
    "missing test message": _drop(("checks", 0, "tests", 0, "message")),
    "missing latency flags": _drop(("latency", 0, "flags")),
    "null for an optional key": _set(("environment", "details"), None),
    "null for an optional section": _set(("integrity",), None),
    "percent over 100": _set(("score", "percent"), 100.5),
    "max_points of 0": _set(("checks", 0, "max_points"), 0),
    "negative passed": _set(("checks", 0, "passed"), -1),
    "boolean as an integer": _set(("checks", 0, "total"), True),
    "string as a number": _set(("score", "points"), "1.0"),
    "short version hash": _set(("exercise", "version_hash"), "abc"),
    "one-sided speed-up interval": _set(("latency", 0, "cases", 0, "speedup_ci"), [1.9]),
    "scan excerpt over 200 characters": _set(("integrity", "scan", 0, "excerpt"), "x" * 201),
    "41 evidence lines": _set(("integrity", "evidence"), ["line"] * 41),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_invalid_reports_are_refused(toy_report: dict[str, Any], name: str) -> None:
    report = _with_sections(toy_report)
    REFUSED[name](report)
    with pytest.raises(ValidationError) as refused:
        validate_report(report)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("report does not follow mlgrade.report/1 at $")
    with pytest.raises(ModelError):  # the models refuse it too
        Report.model_validate(report)


def test_refusal_message_is_one_line_whatever_the_key(toy_report: dict[str, Any]) -> None:
    report = copy.deepcopy(toy_report)
    report["environment"]["details"] = {"multi\nline\nkey": 3}
    with pytest.raises(ValidationError) as refused:
        validate_report(report)
    assert "\n" not in str(refused.value) and len(str(refused.value)) <= 300
    assert list(refused.value.path)[:2] == ["environment", "details"]


def test_docs_name_every_field_of_the_models() -> None:
    """docs/report-schema.md's table names each key a report can hold (as `key` or `key[]`)."""
    doc = (Path(__file__).parents[2] / "docs" / "report-schema.md").read_text()
    named = {name.removesuffix("[]").rsplit(".", 1)[-1] for name in re.findall(r"`([^`\n]+)`", doc)}
    models = [cls for cls in vars(report_model).values()
              if isinstance(cls, type) and issubclass(cls, BaseModel) and cls.__module__ == report_model.__name__]
    missing = [f"{cls.__name__}.{info.alias or name}" for cls in models for name, info in cls.model_fields.items()
               if (info.alias or name) not in named]
    assert missing == []
