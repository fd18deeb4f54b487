"""A round's candidates with their report of one view, checked before any export uses them."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal

from ..batch.layout import CANDIDATE_ID, Round, RoundEntry
from ..errors import BadInput
from ..outdir import one_line, shown

View = Literal["grader", "candidate"]


@dataclass(frozen=True)
class Row:
    """One candidate: the ledger's entry and its report of the chosen view (None when it has none)."""
    entry: RoundEntry
    report: dict[str, Any] | None
    reason: str = ""  # the ledger's reason as this view may show it (scrubbed for the candidate view)

    @property
    def candidate(self) -> str:
        return self.entry.candidate

    @property
    def percent(self) -> float | None:
        """The report's score where there is a report (the ledger copies it), else the ledger's."""
        return self.report["score"]["percent"] if self.report is not None else self.entry.percent


def load_rows(round_: Round, view: View, grader_rows: list[Row] | None = None) -> list[Row]:
    """Every candidate of the round, sorted by id, with its report of `view` read and validated
    against mlgrade.report/1. BadInput (one line) for an id that is not a folder name, an unreadable
    or invalid report, a report of the wrong view, or a graded candidate without a report.
    The candidate view scrubs reasons against the grader-view reports: `grader_rows` when the caller
    has them already, else read here."""
    from ..report import validate_report  # imported late: `mlgrade list` imports the command module
    if view == "candidate" and grader_rows is None:
        grader_rows = load_rows(round_, "grader")
    shown_reason = _reason_for(round_, view, [row.report for row in grader_rows or []])
    rows = []
    for entry in round_.entries:
        if CANDIDATE_ID.fullmatch(entry.candidate) is None:
            raise BadInput(f"{shown(round_.folder)}: the ledger names a candidate {shown(entry.candidate)} "
                           "that is not a valid candidate id")
        where = f"candidate {entry.candidate}: {view}-view report"
        try:
            report = entry.report(view)
        except ValueError as exc:  # layout.RoundFileError: not a plain file, not strict JSON, too deep, ...
            raise BadInput(f"{where} cannot be read: {one_line(str(exc))[:200]}") from None
        if report is None:
            if entry.state == "graded":
                raise BadInput(f"{where} is missing, yet the ledger says graded; grade the round again")
        else:
            try:
                validate_report(report)
            except Exception as exc:  # jsonschema.ValidationError, one line already
                raise BadInput(f"{where}: {exc}") from None
            if report["view"] != view:
                raise BadInput(f"{where} says view {report['view']!r}")
        rows.append(Row(entry, report, shown_reason(entry.reason)))
    return rows


def _reason_for(round_: Round, view: View, reports: list[dict[str, Any] | None]) -> Callable[[str], str]:
    """How the ledger's reasons read in view: as recorded for the grader; for the candidate scrubbed
    as candidate_view scrubs a report (an infrastructure reason may quote anything): against the
    exercise's hidden material, the hidden tests' node ids in the round's grader-view reports and
    every test and helper the hidden test files define; withheld when the exercise is not here."""
    if view == "grader":
        return lambda reason: reason
    from ..exercises import load_exercise
    from ..report import hidden_nodeids, with_hidden_tests
    from ..scrub import HiddenText, scrub
    try:
        exercise = load_exercise(round_.exercise)
    except BadInput:
        return lambda reason: reason and f"(withheld: exercise {round_.exercise} is not installed here to check it)"
    nodeids = [nodeid for report in reports if report is not None for nodeid in hidden_nodeids(report)]
    hidden = with_hidden_tests(HiddenText.from_exercise(exercise), nodeids + _defined_nodeids(exercise))
    return lambda reason: scrub(reason, hidden) if reason else ""


def _defined_nodeids(exercise: Any) -> list[str]:
    """"<file>::<name>" (and "<file>::<Class>::<name>") for every function and class that the hidden
    test files define: a round whose candidates all failed has no report naming its hidden tests."""
    from ..scrub import hidden_test_files, read_text
    found = []
    for path in hidden_test_files(exercise):
        text = read_text(path) if path.suffix == ".py" else None
        try:
            tree = ast.parse(text) if text is not None else None
        except (SyntaxError, ValueError):
            tree = None
        if tree is None:
            continue
        where = path.relative_to(exercise.tests).as_posix()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.append(f"{where}::{node.name}")
                found += [f"{where}::{node.name}::{inner.name}" for inner in ast.walk(node)
                          if inner is not node and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                      ast.ClassDef))]
    return found


def check_order(reports: Iterable[dict[str, Any] | None]) -> list[str]:
    """Check ids in manifest order, merged over the reports (a report may lack a check another has,
    e.g. one for another device): an id first seen in a report goes right after the id before it there."""
    order: list[str] = []
    for report in reports:
        previous = -1
        for check in report["checks"] if report is not None else []:
            if check["id"] not in order:
                order.insert(previous + 1, check["id"])
            previous = order.index(check["id"])
    return order

