"""What the candidate view says about a hidden check, by where each piece of text comes from.

A hidden check's tests, node ids and failure messages never reach the candidate: they are the
hidden tests' own names and assertions. What does, besides the count of tests that did not pass:
- the grader's own wording: a test hit its per-test timeout, crashed the test process, was not
  run because collecting (importing the submission) hung or pytest exited, or reported nothing
  (`runner_lines`); matched whole and shown as a fixed line without its numbers, so neither a
  message that merely starts like one nor digits chosen by candidate code are shown;
- the candidate's own module failing: a collection error's exception line (the submission
  raised while a hidden test module imported it, or lacks a name it imports) when every name it
  quotes is a name of the kit (`HiddenText.names_public`: "cannot import name 'PadCollator' from
  'collate'" is shown; a helper only a hidden test imports gives the exception type alone), and
  an outputs check's import failure; the text after each lead (`LEADS`) is candidate text and is
  scrubbed like any other (grader/scrub.py);
- an outputs check's "not attempted: process_logits_triton is not defined in logits.py", worded
  on the host from the trusted spec;
- the hints of the tests that ran and failed (grader/hints.py), as the report lists them.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .harness.wire import COLLECTION_HUNG
from .scoring import MISSING

if TYPE_CHECKING:
    from .scrub import HiddenText

HIDDEN_NOTE = "details of hidden tests are not shown in the candidate view"
COLLECTION_ERROR = "not run: collection error: "  # harness/runner.py, before the last line of the error
IMPORT_FAILED = "the submission did not import: "

_NUMBER = r"-?\d[\d.e+-]*"
# harness/runner.py and grader/scoring.py wording, each shown as a fixed line with its numbers left out:
# the message comes from the sandbox, where candidate code can write one that matches a pattern with
# any digits it likes (an exception class named like the timeout line), and digits can carry text.
RUNNER_WORDING = [(re.compile(f"^{pattern}$"), line) for pattern, line in (
    (rf"exceeded the per-test timeout of {_NUMBER} s", "exceeded the per-test timeout"),
    (rf"the test process (?:killed by signal {_NUMBER}|exited with code {_NUMBER}) during this test",
     "the test process died during this test"),
    (rf"{re.escape(COLLECTION_HUNG)} within {_NUMBER} s", COLLECTION_HUNG),
    (rf"not run: pytest stopped for over {_NUMBER} s between tests", "not run: pytest stopped between tests"),
    (rf"not run: pytest exited with code {_NUMBER} before this test started",
     "not run: pytest exited before this test started"),
    (re.escape(MISSING), MISSING),
)]
# Lines of a hidden check that end in candidate text: what matches is grader wording, the rest is scrubbed.
LEADS = (re.compile(rf"^\d+ hidden tests?: {re.escape(COLLECTION_ERROR)}"), re.compile(f"^{re.escape(IMPORT_FAILED)}"))
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning))\b")


def hidden_counts(entry: dict[str, Any], hidden: "HiddenText | None" = None) -> None:
    """A hidden check in the candidate view: how many of its tests did not pass, no names (its hints stay)."""
    failed = entry["total"] - entry["passed"]
    entry["tests"] = []
    entry["reasons"] = ([f"-{entry['max_points'] - entry['points']:.2f} pts: {failed} of {entry['total']} "
                         f"hidden tests did not pass ({HIDDEN_NOTE})"] if failed else [])


def _counted(messages: list[str]) -> list[str]:
    """'2 hidden tests: <message>' per distinct message, in first-seen order."""
    counts: dict[str, int] = {}
    for message in messages:
        counts[message] = counts.get(message, 0) + 1
    return [f"{n} hidden test{'s' if n > 1 else ''}: {message}" for message, n in counts.items()]


def collection_error(line: str, hidden: "HiddenText") -> str:
    """The exception line of a collection error as the candidate may see it: whole when every name it
    quotes is public, else its exception type only."""
    line = re.sub(r"^E\s+", "", line.strip())
    if hidden.names_public(line):
        return line
    match = _EXCEPTION.match(line)
    return (f"{match.group(1)} (its message names something outside the exercise's public material)"
            if match else "(the message names something outside the exercise's public material)")


def runner_lines(entry: dict[str, Any], hidden: "HiddenText") -> list[str]:
    """A hidden pytest check's tests whose message is the grader's own wording or a collection error of the
    candidate's code, counted per message."""
    shown = []
    for test in entry["tests"]:
        message = test["message"]
        wording = next((line for pattern, line in RUNNER_WORDING if pattern.match(message)), None)
        if test["outcome"] != "passed" and wording is not None:
            shown.append(wording)
        elif test["outcome"] == "error" and message.startswith(COLLECTION_ERROR):
            shown.append(COLLECTION_ERROR + collection_error(message[len(COLLECTION_ERROR):], hidden))
    return _counted(shown)
