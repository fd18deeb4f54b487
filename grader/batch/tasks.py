"""What an engine runs: one grading as plain, picklable data in and out.

The batch process owns the ledger; engines only run `grade_one` (in a local worker process or as a
Ray task) and hand back a GradeOutcome. A task writes its report files into task.out_dir itself,
atomically (temporary name, then rename), before returning.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Result = Literal["graded", "candidate_failure", "infra_failure"]


@dataclass(frozen=True)
class GradeTask:
    candidate: str
    submission: str        # absolute path to the folder or archive
    exercise: str          # exercise id, or an absolute path to its folder
    exercise_home: str     # MLGRADE_HOME for the worker (where exercises/ and reference/ are)
    backend: str           # auto | docker | bwrap | process
    device: str            # cpu | cuda
    seed: int
    out_dir: str           # DIR/candidates/<candidate>
    key: str               # the ledger key this grading is for
    attempt: int           # 1 for the first try of this key
    needs_gpu: bool        # Ray: num_gpus=1
    exclusive: bool        # has a timed (measured) check: nothing else may run beside it


@dataclass(frozen=True)
class GradeOutcome:
    candidate: str
    key: str
    attempt: int
    result: Result
    reason: str            # one line; '' when graded
    percent: float | None  # None when there is no report (a bad archive, an infrastructure failure)
    duration_s: float


class Engine(Protocol):
    """Runs tasks; the batch loop keeps at most `slots` running, and an exclusive task alone."""

    slots: int

    def start(self, task: GradeTask) -> None:
        """Begin one task; returns at once."""

    def finished(self, timeout: float) -> list[GradeOutcome]:
        """Outcomes of tasks that ended since the last call; waits up to timeout for the first one.
        A task whose worker died is reported as an infra_failure outcome, never lost."""

    def close(self) -> None:
        """Stop what still runs and leave no sandbox behind."""
