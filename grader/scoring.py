"""Scoring: partial credit per check, and a reason for every lost point.

A check's score is points * passed / total over the tests it owns, or, for a check with
`partial_credit = false` (an invariant such as "every sample exactly once"), its points
when every test passes and nothing otherwise. A test with no reported result counts as
failed ("missing"): a crash, a timeout of the whole run, or tampering can only lose points,
never gain them. Latency checks compute their own points and explain them
(`grader/checks/latency.py`).
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
    explanation: tuple[str, ...] | None = None  # reasons given by the check's own judge

    @property
    def passed(self) -> int:
        return sum(t.outcome == "passed" for t in self.tests)

    @property
    def full(self) -> bool:
        return self.earned >= self.check.points

    @property
    def status(self) -> str:
        if self.full:
            return "pass"
        return "partial" if self.earned > 0 else "fail"

    def reasons(self) -> list[str]:
        """One line per lost share of points: which test, how it ended, why."""
        if self.explanation is not None:
            return list(self.explanation)
        if not self.tests:
            return [f"-{self.check.points:g} pts: no tests found for this check"]
        lost = [t for t in self.tests if t.outcome != "passed"]
        if not getattr(self.check, "partial_credit", True):
            head = ([f"-{self.check.points:.2f} pts: all-or-nothing check, {len(lost)} of {len(self.tests)} "
                     "tests did not pass"] if lost else [])
            return head + [f"-0.00 pts: {_describe(t)}" for t in lost]
        share = self.check.points / len(self.tests)
        return [f"-{share:.2f} pts: {_describe(t)}" for t in lost]


def _describe(test: TestResult) -> str:
    return f"{test.nodeid}: {test.outcome}" + (f": {first_line(test.message)}" if test.message else "")


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def fraction_score(check: Check, tests: tuple[TestResult, ...]) -> CheckScore:
    """Points for the share of passed tests (all or nothing where partial_credit is false)."""
    passed = sum(t.outcome == "passed" for t in tests)
    if not tests:
        earned = 0.0
    elif getattr(check, "partial_credit", True):
        earned = round(check.points * passed / len(tests), 4)
    else:
        earned = check.points if passed == len(tests) else 0.0
    return CheckScore(check=check, tests=tests, earned=earned)


def score_pytest_check(check: Check, expected: list[str], results: RunResults) -> CheckScore:
    """Score one pytest check against the expected node ids and what was reported."""
    owned = [n for n in expected if check.owns(n)]
    return fraction_score(check, tuple(results.tests.get(n) or TestResult(n, "missing", 0.0, MISSING)
                                       for n in owned))


def score_checks(manifest: Manifest, expected: list[str], results: RunResults) -> list[CheckScore]:
    """Score every pytest check of the manifest (the others are judged by grader/checks)."""
    return [score_pytest_check(c, expected, results) for c in manifest.checks if c.kind == "pytest"]


def percent(scores: list[CheckScore]) -> float:
    total = sum(s.check.points for s in scores)
    return round(100.0 * sum(s.earned for s in scores) / total, 2) if total else 0.0
