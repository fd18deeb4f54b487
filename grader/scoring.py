"""Scoring: partial credit per check, and a reason for every lost point.

A check's score is points * passed / total over the tests it owns, or, for a check with
`partial_credit = false` (an invariant such as "every sample exactly once"), its points
when every test passes and nothing otherwise. A test with no reported result counts as
failed ("missing"): a crash, a timeout of the whole run, or tampering can only lose points,
never gain them. Latency checks compute their own points and explain them
(`grader/checks/latency.py`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .results import RunResults, TestResult

if TYPE_CHECKING:  # the manifest's models come from the check kinds, which score with this module
    from .manifest import Check, Manifest

STEP = 0.1  # measured and modelled scores move in tenths of a check's points (noise inside a step does not)
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


def step_down(fraction: float, step: float = STEP) -> float:
    """fraction clamped to [0, 1] and rounded down to a step: measurement noise inside a step does not
    move a score between gradings."""
    return math.floor(min(1.0, max(0.0, fraction)) / step + 1e-9) * step


def blocked_score(check: Check, blocked_by: list[str]) -> tuple[CheckScore, str]:
    """0 points because a required check had wrong or missing outputs; (score, the flag for the report)."""
    flag = f"correctness first: {', '.join(blocked_by)} had wrong or missing outputs"
    return CheckScore(check, (), 0.0, (f"-{check.points:.2f} pts: {flag}",)), flag


def per_case_score(check: Check, tests: list[TestResult], fractions: list[float], flags: list[str]) -> CheckScore:
    """A measured or modelled check: points x the mean of its per-case fractions, one reason per lost
    share; any flag scores 0, its points lost once and further evidence listed as `also:` lines."""
    if flags:
        reasons = (f"-{check.points:.2f} pts: {flags[0]}",) + tuple(f"also: {flag}" for flag in flags[1:])
        return CheckScore(check, tuple(tests), 0.0, reasons)
    earned = round(check.points * sum(fractions) / len(fractions), 4) if fractions else 0.0
    share = check.points / max(len(fractions), 1)
    reasons = tuple(f"-{share * (1 - f):.2f} pts: {t.nodeid}: {t.message}"
                    for t, f in zip(tests, fractions) if f < 1.0)
    return CheckScore(check, tuple(tests), earned, reasons)
