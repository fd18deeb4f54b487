"""The batch loop: pending candidates -> engine -> outcomes -> ledger, with retries and backoff.

Exactly-once: a row turns running (and its attempt opens) in one transaction before the task
starts; the task writes its files before it returns; the outcome turns the row final in one
transaction. A batch killed anywhere leaves rows running, which the next batch (holding the
round's lock, so nothing else can be running them) sets back to pending, ending their attempts
as interrupted: each candidate ends with exactly one completed grading for its current key.

Timed checks: a task marked exclusive (its exercise has a measured check, see grader/checks)
starts only when nothing else runs, and nothing starts beside it.
"""
from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from jsonschema import ValidationError

from ..cleanup import remove_tree
from ..errors import InfraError
from ..outdir import one_line
from ..exercises import Exercise
from .layout import CANDIDATES, SUMMARY, read_round
from .ledger import Ledger
from .progress import BatchProgress
from .tasks import Engine, GradeOutcome, GradeTask
from .worker import PARTIAL


@dataclass(frozen=True)
class RoundSettings:
    """What every task of this batch shares."""
    folder: Path
    exercise: str          # id, or an absolute path to the exercise folder
    exercise_home: str
    backend: str           # resolved: docker | bwrap | process
    device: str            # resolved: cpu | cuda
    seed: int
    retries: int           # infrastructure failures retried this many times per candidate and batch
    retry_delay_s: float   # first backoff; doubles with each retry
    exclusive: bool        # the exercise has a measured (timed) check
    needs_gpu: bool


@dataclass
class LoopResult:
    outcomes: dict[str, GradeOutcome] = field(default_factory=dict)
    interrupted: bool = False


def candidate_folder(folder: Path, candidate: str) -> Path:
    return folder / CANDIDATES / candidate


def sweep_partials(folder: Path) -> list[str]:
    """Remove the temporary folders tasks of a dead batch were writing (DIR/candidates/.X.partial-*)."""
    removed = []
    base = folder / CANDIDATES
    if base.is_dir():
        for entry in os.scandir(base):
            if entry.name.startswith(".") and PARTIAL in entry.name:
                remove_tree(Path(entry.path))
                removed.append(entry.name)
    return removed


def backoff(retry_delay_s: float, retry: int) -> float:
    """Seconds before retry number `retry` (1, 2, ...): the base delay doubled each time."""
    return retry_delay_s * 2 ** (retry - 1)


def grade_candidates(settings: RoundSettings, ledger: Ledger, engine: Engine, todo: list[tuple[str, str, str]],
                     progress: BatchProgress) -> LoopResult:
    """Grade todo ((candidate, submission path, key), in order) on engine, recording every state
    change in ledger. Returns the final outcome per candidate. On any exception (Ctrl-C, SIGTERM)
    the open attempts end as interrupted and their rows go back to pending before it propagates;
    the engine is always closed."""
    pid = os.getpid()
    paths = {c: (path, key) for c, path, key in todo}
    pending: deque[str] = deque(c for c, _, _ in todo)
    retry_at: dict[str, float] = {}
    tries: dict[str, int] = {}
    running: dict[str, int] = {}  # candidate -> attempt id
    result = LoopResult()
    try:
        while pending or retry_at or running:
            now = time.monotonic()
            for candidate, when in sorted(retry_at.items(), key=lambda item: item[1]):
                if when <= now:
                    pending.append(candidate)
                    del retry_at[candidate]
            while pending and len(running) < engine.slots and not (settings.exclusive and running):
                candidate = pending.popleft()
                path, key = paths[candidate]
                attempt_id, attempt = ledger.start_attempt(candidate, key, pid)
                tries[candidate] = tries.get(candidate, 0) + 1
                running[candidate] = attempt_id
                engine.start(GradeTask(
                    candidate=candidate, submission=path, exercise=settings.exercise,
                    exercise_home=settings.exercise_home, backend=settings.backend, device=settings.device,
                    seed=settings.seed, out_dir=str(candidate_folder(settings.folder, candidate)), key=key,
                    attempt=attempt, needs_gpu=settings.needs_gpu, exclusive=settings.exclusive))
                progress.started(candidate, attempt)
            wait_s = min([max(0.05, when - now) for when in retry_at.values()] + [1.0])
            if not running:
                time.sleep(wait_s)
                continue
            for outcome in engine.finished(wait_s):
                attempt_id = running.pop(outcome.candidate, None)
                if attempt_id is None or outcome.key != paths[outcome.candidate][1]:
                    continue  # not a task of this batch (cannot happen with the engines here)
                _record(settings, ledger, outcome, attempt_id, tries, retry_at, result, progress)
    except BaseException:
        result.interrupted = True
        ledger.interrupt(pid)
        raise
    finally:
        engine.close()
    return result


def _record(settings: RoundSettings, ledger: Ledger, outcome: GradeOutcome, attempt_id: int, tries: dict[str, int],
            retry_at: dict[str, float], result: LoopResult, progress: BatchProgress) -> None:
    candidate = outcome.candidate
    if outcome.result == "infra_failure" and tries[candidate] <= settings.retries:
        delay = backoff(settings.retry_delay_s, tries[candidate])
        ledger.finish_attempt(attempt_id, candidate, outcome.result, outcome.reason, None, final=False)
        retry_at[candidate] = time.monotonic() + delay
        progress.retrying(outcome, delay, settings.retries - tries[candidate] + 1)
        return
    if outcome.percent is None:  # no report for this key: nothing older may pass for one
        remove_tree(candidate_folder(settings.folder, candidate))
    ledger.finish_attempt(attempt_id, candidate, outcome.result, outcome.reason, outcome.percent, final=True)
    result.outcomes[candidate] = outcome
    progress.finished(outcome)


def finish_round(folder: Path, exercise: Exercise, similarity: float | None = None,
                 sources: dict[str, Path] | None = None) -> list[str]:
    """What is made from the whole round once a batch has finished it: DIR/similarity.json (pairs of
    submissions sharing at least `similarity` of their code beyond the starter; the module's default
    when None), every candidate's report.html in both views and DIR/summary.html. Reads the round
    only through layout.read_round. sources: the submissions as this run's SOURCE names them (a
    candidate no longer in SOURCE is not compared); None: the ledger's paths. Returns lines for the user."""
    from ..html.pages import write_round_pages
    from ..similarity import DEFAULT_THRESHOLD, SIMILARITY_FILE, compare_round, write_similarity

    threshold = DEFAULT_THRESHOLD if similarity is None else similarity
    found = compare_round(read_round(folder), exercise, threshold, sources=sources)
    write_similarity(folder / SIMILARITY_FILE, found)
    try:
        write_round_pages(folder, found.pairs)
    except (ValidationError, ValueError) as exc:  # a report.json damaged, or written by another schema
        raise InfraError(f"the gradings are recorded, but the round's pages were not written: "
                         f"{one_line(str(exc))[:300]}") from None
    pairs = len(found.pairs)
    return [f"similarity: {pairs} pair{'s' if pairs != 1 else ''} sharing at least {threshold:.0%} of their code "
            f"beyond the starter ({len(found.compared)} submissions compared); {SIMILARITY_FILE}",
            f"pages: {SUMMARY} (the round, grader view) and report.html beside each report.json"]
