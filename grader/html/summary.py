"""What the round summary page shows, computed from a Round (grader/batch/layout.py) and its reports."""
from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from ..batch.layout import CANDIDATE_VIEW, Round, RoundEntry
from .plots import Histogram, Interval, IntervalPlot, histogram, interval_plot

STATES = ("graded", "candidate_failure", "infra_failure", "running", "pending")
PAGE = "report.html"


@dataclass(frozen=True)
class CandidateRow:
    candidate: str
    state: str
    percent: float | None  # the grader report's score, else the ledger's
    reason: str
    gradings: int
    attempts: int
    href: str | None            # the grader view page, relative to the summary, when it exists
    candidate_href: str | None  # the candidate view page, when it exists


@dataclass(frozen=True)
class CheckRate:
    """One check over every candidate whose report has it."""
    id: str
    title: str
    reports: int
    passed: int    # status pass
    partial: int
    failed: int
    mean_fraction: float  # mean of points / max_points

    @property
    def pass_rate(self) -> float:
        return self.passed / self.reports if self.reports else 0.0


@dataclass(frozen=True)
class SpeedupGroup:
    """The speed-ups of one latency check and case across the round, one row per candidate."""
    check: str
    case: str
    devices: list[str]
    plot: IntervalPlot


@dataclass(frozen=True)
class SimilarRow:
    a: str
    b: str
    score: float
    detail: str | None


@dataclass(frozen=True)
class RoundSummary:
    info: dict[str, str]
    exercise: str
    rows: list[CandidateRow]
    counts: dict[str, int]
    scores: list[float]
    histogram: Histogram
    rates: list[CheckRate]
    speedups: list[SpeedupGroup]
    similar: list[SimilarRow] | None

    @property
    def score_stats(self) -> dict[str, float]:
        if not self.scores:
            return {}
        return {"mean": statistics.fmean(self.scores), "median": statistics.median(self.scores),
                "min": min(self.scores), "max": max(self.scores)}


def _href(page: Path, base: Path) -> str | None:
    if not page.is_file():
        return None
    return "/".join(quote(part, safe="") for part in Path(os.path.relpath(page, base)).parts)


def _rates(reports: Iterable[dict[str, Any]]) -> list[CheckRate]:
    seen: dict[str, dict[str, Any]] = {}
    for report in reports:
        for check in report["checks"]:
            acc = seen.setdefault(check["id"], {"title": check["title"], "statuses": [], "fractions": []})
            acc["statuses"].append(check["status"])
            acc["fractions"].append(check["points"] / check["max_points"])
    return [CheckRate(id=cid, title=acc["title"], reports=len(acc["statuses"]), passed=acc["statuses"].count("pass"),
                      partial=acc["statuses"].count("partial"), failed=acc["statuses"].count("fail"),
                      mean_fraction=statistics.fmean(acc["fractions"])) for cid, acc in seen.items()]


def _finite_positive(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
               for v in values)


def _interval(label: str, case: dict[str, Any]) -> Interval | None:
    """A latency case's speed-up and its 95% bootstrap interval, when they are plottable numbers."""
    low, high = case["speedup_ci"]
    if not _finite_positive(case["speedup"], low, high):
        return None
    reference = case["reference_speedup"] if _finite_positive(case["reference_speedup"]) else None
    return Interval(label, case["speedup"], low, high, reference)


def round_speedups(reports: list[tuple[str, dict[str, Any]]]) -> list[SpeedupGroup]:
    """One plot per latency check and case, one row per candidate (candidate, report) that has it."""
    groups: dict[tuple[str, str], tuple[list[Interval], list[str]]] = {}
    for candidate, report in reports:
        for section in report.get("latency", []):
            for case in section["cases"]:
                interval = _interval(candidate, case)
                if interval is None:
                    continue
                intervals, devices = groups.setdefault((section["check"], case["case"]), ([], []))
                intervals.append(interval)
                if section["device"] not in devices:
                    devices.append(section["device"])
    return [SpeedupGroup(check, case, devices, interval_plot(intervals))
            for (check, case), (intervals, devices) in groups.items()]


def report_speedups(report: dict[str, Any]) -> dict[str, IntervalPlot]:
    """One plot per latency check of a report, one row per case: check id -> plot."""
    plots = {}
    for section in report.get("latency", []):
        intervals = [i for i in (_interval(case["case"], case) for case in section["cases"]) if i is not None]
        if intervals:
            plots[section["check"]] = interval_plot(intervals)
    return plots


def _similar(pairs: Iterable[Any]) -> list[SimilarRow]:
    def name(side: Any) -> str:
        return str(getattr(side, "candidate", side))  # a candidate id, or an entry that has one
    rows = []
    for pair in pairs:
        detail = getattr(pair, "detail", None)
        rows.append(SimilarRow(a=name(pair.a), b=name(pair.b), score=float(pair.score),
                               detail=None if detail is None else str(detail)))
    return rows


def summarize(round_: Round, base: Path, similar: list | None = None) -> RoundSummary:
    """The summary of round_, with links relative to base (the folder the summary page is written in)."""
    rows, graded = [], []
    for entry in round_.entries:
        report = entry.report("grader")
        percent = report["score"]["percent"] if report is not None else entry.percent
        if report is not None:
            graded.append((entry.candidate, report))
        rows.append(_row(entry, percent, base))
    counts = {state: sum(1 for e in round_.entries if e.state == state) for state in STATES}
    scores = [row.percent for row in rows if row.percent is not None]
    return RoundSummary(info=dict(round_.info), exercise=round_.exercise, rows=rows, counts=counts, scores=scores,
                        histogram=histogram(scores), rates=_rates(r for _, r in graded), speedups=round_speedups(graded),
                        similar=None if similar is None else _similar(similar))


def _row(entry: RoundEntry, percent: float | None, base: Path) -> CandidateRow:
    return CandidateRow(candidate=entry.candidate, state=entry.state, percent=percent, reason=entry.reason,
                        gradings=entry.gradings, attempts=entry.attempts, href=_href(entry.folder / PAGE, base),
                        candidate_href=_href(entry.folder / CANDIDATE_VIEW / PAGE, base))
