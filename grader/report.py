"""Reports: the versioned JSON document, its candidate view, Markdown and a terminal table."""
from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any, Iterable

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .checks import KINDS
from .feedback import LEADS, hidden_counts
from .integrity import TAMPERING_WARNING
from .report_model import SCHEMA_ID
from .scrub import HiddenText, scrub_view

UNSANDBOXED = "UNSANDBOXED: the process backend ran candidate code with no isolation"
TAMPERING_NOTE = (f"{TAMPERING_WARNING}: the verdicts reported from the submission's process were void; "
                  "a grader will review the submission")
MAX_ERROR_CHARS = 300  # a refused report's message: one line, whatever the offending value holds
MIN_NAME = 6  # hidden test names this long are withheld from candidate text even alone ("test_x")


@cache
def _validator() -> Draft202012Validator:
    """The committed schema, generated from grader/report_model.py (`python -m grader.report_model`)."""
    schema = json.loads(resources.files("grader").joinpath("schemas/report-1.schema.json").read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate_report(report: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when report does not follow the documented schema. Its message
    (and str()) is one line: where in the report, then what is wrong; `path`, `schema_path` and
    `validator` are those of the most relevant error."""
    error = best_match(_validator().iter_errors(report))
    if error is None:
        return
    text = " ".join(f"report does not follow {SCHEMA_ID} at {error.json_path}: {error.message}".split())
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS - 1] + "…"
    raise ValidationError(text, validator=error.validator, path=list(error.absolute_path),
                          schema_path=list(error.absolute_schema_path)) from None


def encodable(value: Any) -> Any:
    """value with every lone surrogate in its strings (and keys) written as a visible escape (\\ud800).
    JSON from the sandbox may carry them; a report is then UTF-8 text that every writer and JSON reader
    takes, instead of an error at the first file written."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8") if not value.isascii() else value
    if isinstance(value, dict):
        return {encodable(k): encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encodable(v) for v in value]
    return value


def candidate_view(report: dict[str, Any], hidden: HiddenText | None = None) -> dict[str, Any]:
    """The report a candidate may see: hidden tests' names and messages and the run's output removed
    (a hidden check keeps its count, its hints and the reasons grader/feedback.py allows), and every
    string candidate code could have influenced (public tests' messages, the run's part of reason
    lines, warnings, flags, latency methods, kernel names, version strings) passed through
    `grader.scrub.scrub` against `hidden` (the exercise's hidden material, `HiddenText.from_exercise`;
    None: only capped and cleaned, and long encoded runs withheld); see `grader.scrub.scrub_view`."""
    hidden = with_hidden_tests(hidden if hidden is not None else HiddenText.empty(), hidden_nodeids(report))
    view = copy.deepcopy(report)
    view["view"] = "candidate"
    for check in view["checks"]:
        if check["visibility"] == "hidden":
            (KINDS[check["kind"]].candidate_check or hidden_counts)(check, hidden)
    for kind in KINDS.values():  # a kind's sections: kept (and scrubbed below), rewritten or dropped
        if kind.section in view and kind.candidate_section is not None:
            kept = [s for s in map(kind.candidate_section, view[kind.section]) if s is not None]
            if kept:
                view[kind.section] = kept
            else:
                view.pop(kind.section)
    for key in ("stdout_tail", "stderr_tail"):
        view["run"].pop(key, None)
    view.pop("integrity", None)  # grader view only (tampering evidence, scan findings)
    # The evidence names sentinels and scan rules: the candidate learns only that verdicts were void.
    view["warnings"] = [TAMPERING_NOTE if w.startswith(TAMPERING_WARNING) else w for w in view["warnings"]]
    scrub_view(view, hidden, LEADS)
    return view


def hidden_nodeids(report: dict[str, Any]) -> list[str]:
    """The node ids of a grader-view report's hidden pytest tests."""
    return [t["nodeid"] for c in report["checks"] if c["visibility"] == "hidden" and c["kind"] == "pytest"
            for t in c["tests"]]


def with_hidden_tests(hidden: HiddenText, nodeids: Iterable[str]) -> HiddenText:
    """hidden plus hidden tests' node ids: their text, and their names withheld even alone
    ("test_mean_single"). The one scrubbing index of candidate-view text, for `candidate_view` and
    for the ledger reasons that the candidate-view exports show (grader/exports/rows.py)."""
    nodeids = list(dict.fromkeys(nodeids))
    return hidden.extended(nodeids).with_names(_test_names(nodeids)) if nodeids else hidden


def _test_names(nodeids: list[str]) -> set[str]:
    """The module, class and function names of node ids ("hidden/test_a.py::TestX::test_y[1]")."""
    names = set()
    for nodeid in nodeids:
        path, *parts = nodeid.split("[", 1)[0].split("::")
        names.update([path.rsplit("/", 1)[-1].removesuffix(".py"), *parts])
    return {name for name in names if len(name) >= MIN_NAME}


def to_markdown(report: dict[str, Any]) -> str:
    """A readable report: score, a table of checks, then every reason for lost points."""
    env, score = report["environment"], report["score"]
    lines = [f"# {report['exercise']['title']} — {score['percent']:.1f}%", ""]
    if not env["sandboxed"]:
        lines += [f"> **{UNSANDBOXED}**", ""]
    lines += [f"- Score: {score['points']:.2f} / {score['max_points']:g} points",
              f"- Exercise: `{report['exercise']['id']}` (version `{report['exercise']['version_hash'][:12]}`)",
              f"- Submission: `{report['submission']['source']}` (sha256 `{report['submission']['sha256'][:12]}`)",
              f"- Backend: {env['backend']} on {env['device']}; python {env['python']}, torch {env['torch']}, "
              f"triton {env['triton']}; seed {env['seed']}",
              f"- Graded {report['timing']['finished_at']} in {report['timing']['duration_s']:.1f} s ({report['view']} view)",
              "", "| Check | Visibility | Passed | Points |", "| --- | --- | --- | --- |"]
    for check in report["checks"]:
        lines.append(f"| {check['title']} | {check['visibility']} | {check['passed']}/{check['total']} "
                     f"| {check['points']:.2f} / {check['max_points']:g} |")
    lost = [(c["title"], r) for c in report["checks"] for r in c["reasons"]]
    if lost:
        lines += ["", "## Where points were lost", ""]
        lines += [f"- **{title}**: {reason}" for title, reason in lost]
    hints = [(c["title"], h) for c in report["checks"] for h in c.get("hints", [])]
    if hints:
        lines += ["", "## Hints for failed hidden tests", ""]
        lines += [f"- **{title}**: {hint}" for title, hint in hints]
    for kind in KINDS.values():  # each kind renders its own sections (grader/checks/)
        if kind.section and kind.markdown:
            for section in report.get(kind.section, []):
                lines += [""] + kind.markdown(section)
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def print_table(report: dict[str, Any], console: Console) -> None:
    """The terminal summary: one row per check and the total."""
    env = report["environment"]
    if not env["sandboxed"]:
        console.print(f"[bold red]{UNSANDBOXED}[/]")
    table = Table(title=f"{report['exercise']['id']} — {report['submission']['source']}")
    for column, justify in (("check", "left"), ("vis.", "left"), ("passed", "right"), ("points", "right")):
        table.add_column(column, justify=justify)
    for check in report["checks"]:
        colour = {"pass": "green", "partial": "yellow", "fail": "red"}[check["status"]]
        table.add_row(check["title"], check["visibility"], f"{check['passed']}/{check['total']}",
                      f"[{colour}]{check['points']:.2f}[/] / {check['max_points']:g}")
    score = report["score"]
    table.add_row("[bold]total[/]", "", "", f"[bold]{score['points']:.2f} / {score['max_points']:g} "
                  f"({score['percent']:.1f}%)[/]")
    console.print(table)
    for check in report["checks"]:
        if check.get("hints"):
            console.print(f"[cyan]hints[/] for {escape(check['id'])} (failed hidden tests):")
            for hint in check["hints"]:
                console.print(f"  - {escape(hint)}")
    for warning in report["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")
