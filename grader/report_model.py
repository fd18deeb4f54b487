"""The grading report (`mlgrade.report/1`) as pydantic models: the source of grader/schemas/report-1.schema.json.

The report itself stays a plain dict (built in grader/pipeline.py, viewed in grader/report.py); these models
describe it, and `report_json_schema()` renders the JSON Schema that `grader.report.validate_report` checks
every report against. Edit the models, then regenerate the committed file:

    python -m grader.report_model            # rewrites grader/schemas/report-1.schema.json
    python -m grader.report_model --check    # exit 1 when the committed file differs

tests/grading/test_report_model.py fails while the two differ.

Conventions, so that the schema says exactly what the hand-written one did:
- every model forbids unknown keys (`additionalProperties: false`);
- a key a report may leave out is declared `name: T = Field(None, ...)` with a type that is *not* Optional:
  the key is not required, yet an explicit null is refused (the schema shows only T; the default is
  dropped from the schema). Where null is a real value, the type says `T | None` and the key is required;
- `float` renders as JSON Schema "number" (integers accepted), `int` as "integer".
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, create_model
from pydantic.json_schema import GenerateJsonSchema

from .checks import KINDS
from .checks.base import ReportPart

SCHEMA_ID = "mlgrade.report/1"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
JSON_SCHEMA_ID = "https://mlgrade.dev/schemas/report-1.schema.json"
JSON_SCHEMA_TITLE = "mlgrade report, schema version 1"
SCHEMA_FILE = Path(__file__).parent / "schemas" / "report-1.schema.json"

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# Not checked by the validator (no format checker for date-time is installed), as before: documentation.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Seconds = Annotated[float, Field(ge=0)]
Device = Literal["cpu", "cuda"]
Outcome = Literal["passed", "failed", "error", "skipped", "timeout", "crashed", "missing"]


_Section = ReportPart  # unknown keys are refused, values are not coerced (grader/checks/base.py)


class ReportExercise(_Section):
    """What graded the submission."""

    id: str
    title: str
    version_hash: Sha256


class ReportSubmission(_Section):
    """What was graded."""

    source: str
    sha256: Sha256
    files: list[str]


class ReportEnvironment(_Section):
    """Where and how the grading ran."""

    backend: str
    sandboxed: bool
    device: Device
    seed: int
    mlgrade: str
    python: str | None
    torch: str | None
    triton: str | None
    host: str
    enforced_limits: list[str] = Field(None)
    details: dict[str, str] = Field(None)


class ReportTiming(_Section):
    started_at: Timestamp
    finished_at: Timestamp
    duration_s: Seconds


class ReportScore(_Section):
    points: Annotated[float, Field(ge=0)]
    max_points: Annotated[float, Field(gt=0)]
    percent: Annotated[float, Field(ge=0, le=100)]


class ReportedTest(_Section):
    """One test of a check and its outcome."""

    nodeid: str
    outcome: Outcome
    duration_s: Seconds
    message: str


class ReportCheck(_Section):
    """One check of the exercise and what it earned."""

    id: str
    title: str
    kind: str
    visibility: Literal["public", "hidden"]
    points: Annotated[float, Field(ge=0)]
    max_points: Annotated[float, Field(gt=0)]
    partial_credit: bool = Field(description="false: all-or-nothing check")
    status: Literal["pass", "partial", "fail"]
    passed: Annotated[int, Field(ge=0)]
    total: Annotated[int, Field(ge=0)]
    reasons: list[str]
    tests: list[ReportedTest] = Field(description="Empty for hidden checks in the candidate view.")
    hints: list[str] = Field(None, description="hidden checks only, both views: the exercise's one-line hint "
                                               "of each test that ran and did not pass, each once, in test "
                                               "order (grader/hints.py); left out when there is none")


class SandboxRun(_Section):
    """One sandbox run of the grading."""

    what: str
    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    wall_s: Seconds


class ReportRun(_Section):
    """The sandbox runs, summed up."""

    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    wall_s: Seconds
    peak_memory_mb: float | None
    complete: bool = Field(description="the runner reported the end of the run")
    malformed_lines: Annotated[int, Field(ge=0)] = Field(None)
    stdout_tail: str = Field(None, description="grader view only")
    stderr_tail: str = Field(None, description="grader view only")
    runs: list[SandboxRun] = Field(None, description="every sandbox run of this grading")


class ScanFinding(_Section):
    """One finding of the static scan (grader/scan.py)."""

    file: str
    line: Annotated[int, Field(ge=0)]
    rule: str
    severity: Literal["tamper", "review"]
    excerpt: Annotated[str, Field(max_length=200)]


class ReportIntegrity(_Section):
    """Evidence of verdict tampering and the static scan's findings (grader/integrity.py)."""

    tampering: bool = Field(description="true when any evidence was found: every pytest check then scores 0")
    evidence: Annotated[list[str], Field(max_length=40)]
    evidence_total: Annotated[int, Field(ge=0)]
    scan: list[ScanFinding]


class _ReportBase(_Section):
    """An mlgrade report, grader or candidate view (docs/report-schema.md)."""

    model_config = ConfigDict(title=JSON_SCHEMA_TITLE)

    schema_: Literal[SCHEMA_ID] = Field(alias="schema")
    view: Literal["grader", "candidate"]
    exercise: ReportExercise
    submission: ReportSubmission
    environment: ReportEnvironment
    timing: ReportTiming
    score: ReportScore
    checks: list[ReportCheck]
    run: ReportRun
    warnings: list[str]
    integrity: ReportIntegrity = Field(
        None, description="Grader view only: evidence of verdict tampering and the static scan's findings "
                          "(grader/integrity.py).")


# Each check kind with a report section adds an optional list of its section model (grader/checks/).
Report = create_model(
    "Report", __base__=_ReportBase, __doc__=_ReportBase.__doc__,
    **{kind.section: (list[kind.section_model], Field(None, description=kind.section_doc))  # type: ignore[misc]
       for kind in KINDS.values() if kind.section and kind.section_model})


class _Generator(GenerateJsonSchema):
    """Only what constrains a report: no titles derived from field names, no defaults (an absent key has none)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: Any) -> dict[str, Any]:
        return self.generate_inner(schema["schema"])


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of a report, rendered from `Report`: $schema, $id and title first, then
    pydantic's layout (properties in declaration order, models under $defs sorted by name)."""
    generated = Report.model_json_schema(by_alias=True, schema_generator=_Generator, mode="validation")
    assert generated.pop("title") == JSON_SCHEMA_TITLE
    head = {"$schema": JSON_SCHEMA_DIALECT, "$id": JSON_SCHEMA_ID, "title": JSON_SCHEMA_TITLE}
    defs = generated.pop("$defs", {})
    return {**head, **generated, "$defs": dict(sorted(defs.items()))}


def render_schema() -> str:
    """The exact text of grader/schemas/report-1.schema.json."""
    return json.dumps(report_json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.report_model",
                                     description=f"Regenerate {SCHEMA_FILE.name} from grader/report_model.py.")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when the file is out of date")
    args = parser.parse_args(argv)
    text = render_schema()
    current = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else None
    if args.check:
        if current != text:
            sys.stderr.write(f"{SCHEMA_FILE}: out of date; run python -m grader.report_model\n")
            return 1
        return 0
    if current != text:
        SCHEMA_FILE.write_text(text)
        print(f"wrote {SCHEMA_FILE}")
    else:
        print(f"{SCHEMA_FILE}: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
