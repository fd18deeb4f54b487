"""Render and write the HTML pages: one per report (grader or candidate view) and a round summary.

Jinja2 with autoescape on for every template: candidate strings reach the page as text only, and no
template marks report data `|safe`. The pages carry no script and load nothing: CSS and SVG are
inline, and a Content-Security-Policy meta tag forbids everything else.
"""
from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from ..batch.layout import CANDIDATE_VIEW, SUMMARY, Round, read_round
from ..checks import KINDS
from ..outdir import Out, write_files
from ..report import validate_report
from .summary import STATES, report_speedups, summarize

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
# Top-level report keys the submission template lays out itself; any other (a kind's section, a key
# added later) is shown by the generic renderer, so nothing in a report goes unseen by the grader.
LAID_OUT = {"schema", "view", "exercise", "submission", "environment", "timing", "score", "checks", "run",
            "warnings", "integrity", "latency"}
CHECK_KEYS = {"id", "title", "kind", "visibility", "points", "max_points", "partial_credit", "status", "passed",
              "total", "reasons", "tests", "hints"}


def _num(value: Any) -> str:
    """A number exactly as report.json holds it (for data-value attributes): JSON text, null for None."""
    if isinstance(value, float) and not math.isfinite(value):
        return "null"
    return json.dumps(value)


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return format(value, spec)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of a list of objects, in first-seen order (a table's columns)."""
    return list(dict.fromkeys(key for row in rows for key in row))


@cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("grader.html", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["num"] = _num
    env.filters["fmt"] = _fmt
    env.filters["columns"] = _columns
    env.globals.update(CSP=CSP, STATES=STATES)
    return env


def _sections(report: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """Kinds' sections other than latency (drawn on its own), then any key the template does not know."""
    known = [kind.section for kind in KINDS.values() if kind.section and kind.section != "latency"]
    order = [key for key in known if key in report] + [key for key in report if key not in LAID_OUT and key not in known]
    return [(key, report[key]) for key in order]


def render_submission(report: dict[str, Any]) -> str:
    """The page of one report, in the view the report is (report["view"]): a candidate view page shows
    only what grader.report.candidate_view kept. The report is validated first."""
    validate_report(report)
    return environment().get_template("submission.html.j2").render(
        report=report, sections=_sections(report), check_keys=CHECK_KEYS, speedups=report_speedups(report))


def render_summary(round_: Round, base: Path, similar: list | None = None) -> str:
    """The round summary page, with links relative to base (where the page will be written)."""
    summary = summarize(round_, base, similar)
    return environment().get_template("summary.html.j2").render(summary=summary)


def _write(path: Path, text: str) -> None:
    """Replace path atomically (InfraError, one line, when it cannot be written)."""
    folder = path.parent
    write_files(Out(arg=str(folder), path=folder), {path.name: text})


def write_submission_page(report: dict[str, Any], path: Path) -> None:
    """Write the page of report (grader or candidate view, as the report is) to path."""
    _write(Path(path), render_submission(report))


def write_summary_page(round_: Round, path: Path, similar: list | None = None) -> None:
    """Write the round summary page to path (DIR/summary.html by convention). similar: pairs from
    grader.similarity (objects with a, b, score in 0..1 and optional detail), shown when given."""
    path = Path(path)
    _write(path, render_summary(round_, path.parent, similar))


def write_round_pages(folder: Path, similar: list | None = None) -> Round:
    """Write every page of the round in folder: each candidate's report.html beside each report.json
    (grader view, and the candidate view in candidate/), then DIR/summary.html. Returns the round."""
    round_ = read_round(Path(folder))
    for entry in round_.entries:
        for view, home in (("grader", entry.folder), ("candidate", entry.folder / CANDIDATE_VIEW)):
            report = entry.report(view)
            if report is not None:
                write_submission_page(report, home / "report.html")
    write_summary_page(round_, Path(folder) / SUMMARY, similar)
    return round_
