"""Verdict tampering: the evidence one grading collects, and what it costs.

Pytest verdicts are reported from inside the candidate's process, so they can be forged
there (docs/security.md). A grading collects evidence that they were:
- a sentinel test (grader/sentinels.py), which every submission fails, reported as passed;
- events the runner received out of the plugin's order (a result for a test that was not
  running, a start for one that was not asked for: harness/runner.py);
- result lines in the results file that the runner did not sign;
- "tamper" findings of the static scan (grader/scan.py): code that patches pytest, the
  harness, comparison functions, builtins or the import system, or reads hidden tests.

Any evidence voids every verdict that came from the candidate's process: each pytest check
scores 0 and its tests are listed as void with what they reported. Checks judged on the host
(outputs compared with the host's own reference) keep their points, so forging never raises
a score above what the same code earns without the payload. The grader view names the
evidence; the candidate view says only that the verdicts were void.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .results import TestResult
from .scoring import CheckScore

TAMPERING_WARNING = "VERDICT TAMPERING"  # the grader view's first warning starts with this

VOID_REASON = ("verdict tampering: this check's verdicts came from the candidate's process, "
               "which tampered with them; they are void")
MAX_EVIDENCE = 40


@dataclass
class Integrity:
    evidence: list[str] = field(default_factory=list)
    scan: list[Any] = field(default_factory=list)  # grader.scan.Finding, every severity

    @property
    def tampered(self) -> bool:
        return bool(self.evidence)

    def add(self, lines: list[str]) -> None:
        self.evidence.extend(lines)

    def void(self, score: CheckScore) -> CheckScore:
        """score with 0 points and every test re-labelled void (the grader view keeps what it reported)."""
        tests = tuple(TestResult(t.nodeid, "error", t.duration_s,
                                 f"void (verdict tampering); reported {t.outcome}" + (f": {t.message}" if t.message else ""))
                      for t in score.tests)
        return CheckScore(score.check, tests, 0.0, (f"-{score.check.points:.2f} pts: {VOID_REASON}",))

    def warning(self) -> str | None:
        if not self.tampered:
            return None
        more = f" (and {len(self.evidence) - 1} more in the integrity section)" if len(self.evidence) > 1 else ""
        return f"{TAMPERING_WARNING}: {self.evidence[0]}{more}; pytest checks score 0"

    def section(self) -> dict[str, Any]:
        return {"tampering": self.tampered, "evidence": self.evidence[:MAX_EVIDENCE],
                "evidence_total": len(self.evidence),
                "scan": [{"file": f.file, "line": f.line, "rule": f.rule, "severity": f.severity,
                          "excerpt": f.excerpt} for f in self.scan]}


def run_evidence(sentinel_lines: list[str], anomalies: list[str], unauthenticated: int) -> list[str]:
    """Evidence lines from one pytest run."""
    lines = list(sentinel_lines)
    lines += [f"the test runner received an event out of order: {a}" for a in anomalies]
    if unauthenticated:
        lines.append(f"{unauthenticated} result lines in the results file were not signed by the test runner")
    return lines


def scan_evidence(findings: list[Any]) -> list[str]:
    return [f"static scan: {f.file}:{f.line}: {f.rule}: {f.excerpt}" for f in findings if f.severity == "tamper"]
