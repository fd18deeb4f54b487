"""What a batch shows while it runs: a rich progress bar with counts and ETA on a terminal, one plain
line per event otherwise (logs, CI). Candidate ids are safe (layout.CANDIDATE_ID); reasons are not,
so every line goes out with markup off and control characters escaped."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..outdir import one_line
from .tasks import GradeOutcome


@dataclass
class Counts:
    graded: int = 0
    candidate_failures: int = 0
    infra_failures: int = 0
    total: int = 0
    retries: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.graded + self.candidate_failures + self.infra_failures

    def line(self) -> str:
        return (f"graded {self.graded} · candidate failures {self.candidate_failures} · "
                f"infra failures {self.infra_failures} · remaining {self.total - self.done}")


def _outcome_text(outcome: GradeOutcome) -> str:
    score = f" {outcome.percent:.1f}%" if outcome.percent is not None else ""
    reason = f": {one_line(outcome.reason)}" if outcome.reason else ""
    return f"{outcome.candidate}: {outcome.result.replace('_', ' ')}{score}{reason} ({outcome.duration_s:.1f} s)"


class BatchProgress:
    """Plain lines on console; with live=True (a terminal) a progress bar under them."""

    def __init__(self, console: Console, total: int, live: bool) -> None:
        self.console = console
        self.counts = Counts(total=total)
        self.live = live
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> "BatchProgress":
        if self.live:
            self._bar = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=self.console, transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("grading", total=self.counts.total, counts=self.counts.line())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def say(self, text: str) -> None:
        self.console.print(one_line(text), markup=False, highlight=False, emoji=False, soft_wrap=True)

    def _update(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.counts.done, counts=self.counts.line())

    def started(self, candidate: str, attempt: int) -> None:
        if not self.live:
            again = f" (attempt {attempt})" if attempt > 1 else ""
            self.say(f"[{self.counts.done}/{self.counts.total}] {candidate}: grading{again}")

    def finished(self, outcome: GradeOutcome) -> None:
        if outcome.result == "graded":
            self.counts.graded += 1
        elif outcome.result == "candidate_failure":
            self.counts.candidate_failures += 1
        else:
            self.counts.infra_failures += 1
        self.say(f"[{self.counts.done}/{self.counts.total}] {_outcome_text(outcome)}")
        self._update()

    def retrying(self, outcome: GradeOutcome, delay_s: float, tries_left: int) -> None:
        self.counts.retries += 1
        self.say(f"{outcome.candidate}: infrastructure failure, retrying in {delay_s:.1f} s "
                 f"({tries_left} {'retry' if tries_left == 1 else 'retries'} left): {one_line(outcome.reason)}")
