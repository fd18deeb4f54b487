"""Kind `pytest`: points for the exercise's pytest tests, run in one sandbox run per grading.

Every pytest check of a grading shares that run: the tests are copied with sentinels planted
(grader/sentinels.py), the in-sandbox runner signs one result per test, and each check scores the
tests it owns. Verdicts come from the candidate's process, so tampering evidence voids them.
"""
from __future__ import annotations

import dataclasses
import random
import secrets
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ..feedback import hidden_counts, runner_lines
from ..harness.wire import COLLECTION_HUNG
from ..harness.wire import nodeid_matches as matches  # a file, file::test or file::test[param]
from ..integrity import run_evidence
from ..results import RunResults
from ..scoring import CheckScore, score_pytest_check
from ..scrub import HiddenText
from ..sentinels import plant, tripped
from .base import CheckSpec, Context, Kind, Outcome

COLLECT_TIMEOUT_FACTOR = 2.0  # collecting (importing the submission) may take this many per-test timeouts


class PytestCheck(CheckSpec):
    """Points for the pytest tests under the given node-id prefixes; a hidden one may give hints, keyed by
    node-id prefixes under those (`hidden/test_x.py::test_y`)."""

    takes_hints: ClassVar[bool] = True

    kind: Literal["pytest"] = "pytest"
    tests: list[str] = Field(min_length=1)
    timeout_s: float | None = Field(None, gt=0)
    partial_credit: bool = True  # False: the points need every test of the check to pass (an invariant)
    requires: list[str] = []  # pytest checks that must pass fully, else this one scores 0 (its tests still listed)

    @model_validator(mode="after")
    def _tests_match_visibility(self) -> "PytestCheck":
        for pattern in self.tests:
            if not pattern.startswith(self.visibility + "/"):
                raise ValueError(f"test {pattern!r} is not under {self.visibility}/ like its check")
        return self

    def owns(self, nodeid: str) -> bool:
        return any(matches(pattern, nodeid) for pattern in self.tests)


def grade(ctx: Context, checks: list[PytestCheck]) -> dict[str, Outcome]:
    # Tests of checks left out on this device (a CUDA-only check on a CPU grading) are not run.
    expected = [n for n in ctx.collect() if any(c.owns(n) for c in checks)]
    # Sentinels that every submission fails are planted in a copy of the tests, fresh per grading.
    planted = plant(ctx.exercise.tests, ctx.scratch / "tests", expected, random.Random(secrets.randbits(64)))
    ctx.progress(f"{ctx.label}: running {len(expected)} tests")
    limits = ctx.exercise.manifest.limits
    config = {"mode": "run", "nodeids": list(planted.nodeids), "default_timeout": limits.test_timeout_s,
              "collect_timeout": COLLECT_TIMEOUT_FACTOR * limits.test_timeout_s,
              "timeouts": {p: c.timeout_s for c in checks if c.timeout_s for p in c.tests}}
    run, results = ctx.run_harness(ctx.workspace, config, ctx.device, ctx.seed, tests=planted.tests)
    evidence = run_evidence(tripped(planted, {n: t.outcome for n, t in results.tests.items()}),
                            results.anomalies, results.unauthenticated_lines)
    results.tests = planted.real(results.tests)  # renamed tests' results under their real names
    hung = next((t.message for t in results.tests.values() if t.message.startswith(COLLECTION_HUNG)), None)
    scores = {c.id: score_pytest_check(c, expected, results) for c in checks}
    outcomes = {c.id: Outcome(gated(c, scores[c.id], scores)) for c in checks}
    # What the run says about the grading as a whole travels with the first check's outcome.
    first = outcomes[checks[0].id]
    first.runs = [("pytest", run)]
    first.env = dict(results.env)
    first.complete = results.done
    first.malformed = results.malformed_lines + results.unauthenticated_lines
    first.evidence = evidence
    first.warnings = result_warnings(expected, results)
    # The probes of later checks import the same code: they are judged without a run.
    first.import_hung = hung.removeprefix("not run: ") if hung else None
    return outcomes


def gated(check: PytestCheck, score: CheckScore, scores: dict[str, CheckScore]) -> CheckScore:
    """0 points while a check this one `requires` has not passed fully (a fix that breaks the service
    earns nothing); its own tests stay listed, so the grader sees what passed."""
    blocking = [r for r in check.requires if r in scores and not scores[r].full]
    if not blocking or score.earned == 0:
        return score
    return dataclasses.replace(score, earned=0.0, explanation=(
        f"-{check.points:.2f} pts: counts only when {', '.join(blocking)} passes fully, and it did not",))


def result_warnings(expected: list[str], results: RunResults) -> list[str]:
    warnings = []
    if not results.started:
        warnings.append("the results file was deleted or emptied during the run (by candidate code?); "
                        "tests without a result count as failed")
    elif not results.done:
        warnings.append("the test runner did not report the end of the run")
    if results.truncated:
        warnings.append("the results file was over its size cap; the rest was ignored")
    if results.malformed_lines:
        warnings.append(f"{results.malformed_lines} malformed result lines were ignored")
    if results.unauthenticated_lines:
        warnings.append(f"{results.unauthenticated_lines} result lines were not signed by the test runner "
                        "(written by candidate code?) and were ignored")
    if results.conflicting:
        warnings.append(f"{len(results.conflicting)} tests were reported twice with different outcomes "
                        "(the first non-pass was kept)")
    unknown = set(results.tests) - set(expected)  # sentinels are gone: planted.real() maps them out
    if unknown:
        warnings.append(f"{len(unknown)} results for tests the exercise does not define were ignored")
    return warnings


def candidate_check(entry: dict[str, Any], hidden: HiddenText) -> None:
    """A hidden pytest check for the candidate: the count of tests that did not pass, then the grader's own
    wording (timeouts, crashes, tests not run) and collection errors of the candidate's code (grader/feedback.py)."""
    lines = runner_lines(entry, hidden)
    hidden_counts(entry)
    entry["reasons"] += lines


KIND = Kind(name="pytest", spec=PytestCheck, grade=grade, candidate_verdicts=True, candidate_check=candidate_check)
