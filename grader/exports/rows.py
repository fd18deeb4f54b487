"""A round's candidates with their report of one view, checked before any export uses them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal

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


def load_rows(round_: Round, view: View) -> list[Row]:
    """Every candidate of the round, sorted by id, with its report of `view` read and validated
    against mlgrade.report/1. BadInput (one line) for an id that is not a folder name, an unreadable
    or invalid report, a report of the wrong view, or a graded candidate without a report."""
    from ..report import validate_report  # imported late: `mlgrade list` imports the command module
    shown_reason = _reason_for(round_, view)
    rows = []
    for entry in round_.entries:
        if CANDIDATE_ID.fullmatch(entry.candidate) is None:
            raise BadInput(f"{shown(round_.folder)}: the ledger names a candidate {shown(entry.candidate)} "
                           "that is not a valid candidate id")
        where = f"candidate {entry.candidate}: {view}-view report"
        try:
            report = entry.report(view)
        except (OSError, ValueError) as exc:  # ValueError: not JSON (or not UTF-8)
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


def _reason_for(round_: Round, view: View) -> Any:
    """How the ledger's reasons read in view: as recorded for the grader; for the candidate scrubbed
    against the exercise's hidden material (an infrastructure reason may quote anything), or withheld
    when the exercise is not here to scrub against."""
    if view == "grader":
        return lambda reason: reason
    from ..exercises import load_exercise
    from ..scrub import HiddenText, scrub
    try:
        hidden = HiddenText.from_exercise(load_exercise(round_.exercise))
    except BadInput:
        return lambda reason: reason and f"(withheld: exercise {round_.exercise} is not installed here to check it)"
    return lambda reason: scrub(reason, hidden) if reason else ""


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

