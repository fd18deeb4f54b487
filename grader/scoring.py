"""Scoring: partial credit per check, and a reason for every lost point.

A check's score is points * passed / total over the tests it owns, or, for a check with
`partial_credit = false` (an invariant such as "every sample exactly once"), its points
when every test passes and nothing otherwise. A test with no
reported result counts as failed ("missing"): a crash, a timeout of the whole run, or
tampering can only lose points, never gain them.
"""
from __future__ import annotations

from dataclasses import dataclass

from .manifest import Check, Manifest
from .results import RunResults, TestResult

MISSING = "no result reported (the test run crashed, hit a limit or was tampered with)"


@dataclass(frozen=True)
class CheckScore:
    check: Check
    tests: tuple[TestResult, ...]
    earned: float

    @property
    def passed(self) -> int:
        return sum(t.outcome == "passed" for t in self.tests)

    @property
    def status(self) -> str:
        if self.tests and self.passed == len(self.tests):
            return "pass"
        return "partial" if self.earned > 0 else "fail"

    def reasons(self) -> list[str]:
        """One line per lost share of points: which test, how it ended, why."""
        if not self.tests:
            return [f"-{self.check.points:g} pts: no tests found for this check"]
        lost = [t for t in self.tests if t.outcome != "passed"]
        if not self.check.partial_credit:
            head = ([f"-{self.check.points:.2f} pts: all-or-nothing check, {len(lost)} of {len(self.tests)} "
                     "tests did not pass"] if lost else [])
            return head + [f"-0.00 pts: {_describe(t)}" for t in lost]
        share = self.check.points / len(self.tests)
        return [f"-{share:.2f} pts: {_describe(t)}" for t in lost]


def _describe(test: TestResult) -> str:
    return f"{test.nodeid}: {test.outcome}" + (f": {_first_line(test.message)}" if test.message else "")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def score_checks(manifest: Manifest, expected: list[str], results: RunResults) -> list[CheckScore]:
    """Score every check of the manifest against the expected node ids and what was reported."""
    scores = []
    for check in manifest.checks:
        owned = [n for n in expected if check.owns(n)]
        tests = tuple(results.tests.get(n) or TestResult(n, "missing", 0.0, MISSING) for n in owned)
        passed = sum(t.outcome == "passed" for t in tests)
        if not tests:
            earned = 0.0
        elif check.partial_credit:
            earned = round(check.points * passed / len(tests), 4)
        else:
            earned = check.points if passed == len(tests) else 0.0
        scores.append(CheckScore(check=check, tests=tests, earned=earned))
    return scores


def percent(scores: list[CheckScore]) -> float:
    total = sum(s.check.points for s in scores)
    return round(100.0 * sum(s.earned for s in scores) / total, 2) if total else 0.0
