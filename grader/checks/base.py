"""What a check kind is: its manifest entry, how it grades, and what it hands back.

Each kind is one module in grader/checks/ defining a `Kind` (registered in grader/checks/__init__.py,
as sandbox.BACKENDS registers backends). The pipeline calls `kind.grade(context, checks)` once per
grading with every check of that kind, in registry order, and folds the `Outcome`s it returns into
the report: a kind never writes into another kind's state. What a later kind needs from an earlier
one (the scores a `requires` list names, an import known to hang) it reads from the `Context`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..harness.wire import nodeid_matches

if TYPE_CHECKING:
    from sandbox import RunResult

    from ..exercises import Exercise
    from ..scoring import CheckScore
    from ..scrub import HiddenText

SLUG = r"^[a-z0-9][a-z0-9-]*$"
HINT_MAX_CHARS = 120  # a hint is one short line (grader/hints.py)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportPart(BaseModel):
    """Base of every part of the report (grader/report_model.py), kinds' sections included: unknown
    keys are refused, values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CheckSpec(Strict):
    """The keys every check has in exercise.toml; each kind's spec adds `kind` and its own keys.

    `hints` maps a node-id prefix of this check's tests (as the report names them) to one line shown
    to a candidate who failed such a test (grader/hints.py). Only hidden checks of kinds that set
    `takes_hints` may have them (the Manifest checks that each key names its tests): a public test
    shows its own message."""

    takes_hints: ClassVar[bool] = False

    id: str = Field(pattern=SLUG)
    title: str = Field(min_length=1)
    visibility: Literal["public", "hidden"]
    points: float = Field(gt=0)
    device: Literal["cpu", "cuda", "any"] = "any"  # gradings on another device leave the check out
    hints: dict[str, str] = {}

    def owns(self, nodeid: str) -> bool:
        """True when the pytest node id belongs to this check (only pytest checks own tests)."""
        return False

    def hint_key_owned(self, key: str) -> bool:
        """True when key names this check's tests (or some of them)."""
        return self.owns(key)

    def hint_targets(self, exercise: "Exercise", collected: list[str]) -> list[str] | None:
        """The node ids this check's tests will have (collected: the exercise's pytest node ids), or None
        when they cannot be known before a grading."""
        return [n for n in collected if self.owns(n)]

    @model_validator(mode="after")
    def _hints_are_lines(self) -> "CheckSpec":
        if self.hints and self.visibility != "hidden":
            raise ValueError("hints are for hidden checks (a public test shows its own message)")
        for key, text in self.hints.items():  # whether each key names a test of its check: the Manifest's
            if not text.strip() or text != text.strip():
                raise ValueError(f"hint for {key!r} must not be empty or start or end with spaces")
            if not text.isprintable():
                raise ValueError(f"hint for {key!r} must be one printable line (no newline, tab, control, "
                                 "zero-width or bidi characters)")
            if len(text) > HINT_MAX_CHARS:
                raise ValueError(f"hint for {key!r} has {len(text)} characters; at most {HINT_MAX_CHARS}")
        return self

    def hint_for(self, nodeid: str) -> str | None:
        """The hint of the longest key that names nodeid, or None."""
        keys = [k for k in self.hints if nodeid_matches(k, nodeid)]
        return self.hints[max(keys, key=len)] if keys else None


@dataclass
class Outcome:
    """What grading one check produced. Everything but `score` is optional."""

    score: "CheckScore"
    runs: list[tuple[str, "RunResult"]] = field(default_factory=list)  # (what, run) per sandbox run
    section: dict[str, Any] | None = None  # this check's entry in the report section its kind names
    warnings: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)  # verdict-tampering evidence (grader/integrity.py)
    env: dict[str, Any] = field(default_factory=dict)  # versions seen inside the sandbox
    import_hung: str | None = None  # why importing the submission never finished, if seen
    complete: bool = True  # False when a run did not report its end
    malformed: int = 0  # result lines that were refused


@dataclass
class Context:
    """What the pipeline gives a kind for one grading: the exercise, the workspace, the sandbox, and
    what earlier kinds decided. Sandbox runs go through `run_harness` / `probe` (grader/pipeline.py)."""

    exercise: "Exercise"
    workspace: Path  # the starter with the submission over it
    scratch: Path  # a folder of this grading's, removed with it
    device: str
    seed: int
    label: str  # for progress lines
    progress: Callable[[str], None]
    run_harness: Callable[..., Any]  # (code, config, device, seed, wall_s=, tests=) -> (RunResult, RunResults)
    probe: Callable[..., Any]  # (code, config, device, seed, judge, env=, wall_s=) -> (RunResult, judged)
    reference_workspace: Callable[[], Path]  # the reference over the starter, made on first use
    collect: Callable[[], list[str]]  # the exercise's node ids, collected against the starter
    cache: dict[Any, Any]  # kept by the Grader across gradings (deterministic results only)
    scores: dict[str, "CheckScore"] = field(default_factory=dict)  # checks graded so far
    import_hung: str | None = None

    def spec_module(self):
        from .spec import load_spec
        return load_spec(self.exercise.root / str(self.exercise.manifest.spec))

    def spec_path(self) -> str:
        """The spec's path relative to the tests folder (mounted at /mlgrade/tests)."""
        return str((self.exercise.root / str(self.exercise.manifest.spec)).relative_to(self.exercise.tests))

    def blocked(self, check: Any) -> list[str]:
        """Required checks with a case that went wrong: "skipped" is an optional entry (a Triton
        kernel) that was not attempted, which costs that check's points but is not wrong."""
        return [r for r in getattr(check, "requires", []) if r in self.scores
                and any(t.outcome not in ("passed", "skipped") for t in self.scores[r].tests)]


@dataclass(frozen=True)
class Kind:
    """A check kind. `grade` gets every check of this kind in one grading and returns an Outcome per id.

    candidate_verdicts: its verdicts come from the candidate's process (void when tampering is seen);
    measured: its points come from timings and may move by one scoring step between gradings;
    priced_by_measurement: its points come from a measurement or a model, not from tests passing
    (a calibration costing only such checks need not fail a hidden test);
    section: the report key under which its outcomes' sections are listed, if any, with
    section_model (a ReportPart: the report schema is generated from it) and section_doc;
    candidate_check: rewrites a hidden check's report entry for the candidate view, given the exercise's
    hidden material (default: the count of hidden tests that did not pass; grader/feedback.py says what
    else a candidate may be told); candidate_section: the candidate view of one of its
    sections (None drops it; default: kept, and scrubbed like every string there); markdown: one
    section's lines in report.md;
    needs_spec: its checks need the exercise's trusted spec module."""

    name: str
    spec: type[CheckSpec]
    grade: Callable[[Context, list[Any]], dict[str, Outcome]]
    candidate_verdicts: bool = False
    measured: bool = False
    priced_by_measurement: bool = False
    section: str | None = None
    section_model: type[BaseModel] | None = None
    section_doc: str = ""
    candidate_check: Callable[[dict[str, Any], "HiddenText"], None] | None = None
    candidate_section: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    markdown: Callable[[dict[str, Any]], list[str]] | None = None  # one section's lines in report.md
    needs_spec: bool = False
