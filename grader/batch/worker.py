"""One grading of a round: `grade_one(task) -> GradeOutcome`, run by every engine (a local worker
process, a Ray task). It grades with grader.pipeline.Grader, writes both views' report.json and
report.md into task.out_dir atomically (`write_outputs`) and sorts what happened into the failure
taxonomy:

- graded: a report, whatever the score;
- candidate_failure, never retried: the submission was refused (bad archive, missing file, syntax
  error: intake's one line), or its report shows the run timed out, ran out of memory or crashed
  (the report is kept and its percent recorded);
- infra_failure, retried by the batch loop: an InfraError (sandbox or image missing, engine gone),
  an exercise that cannot be graded, a timing that could not be measured reliably (a latency
  check's clean run too noisy, or without timings), or anything unexpected in the grader.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

from ..cleanup import remove_tree
from ..errors import BadInput, InfraError, SubmissionRefused
from ..outdir import one_line
from .layout import CANDIDATE_VIEW
from .tasks import GradeOutcome, GradeTask, Result

PARTIAL = ".partial-"  # DIR/candidates/.<candidate>.partial-XXXX while a task writes (removed at batch start)
REASON_MAX = 300
INCONCLUSIVE_MARK = "(infrastructure)"  # how grader/checks/latency.py flags a case it could not time cleanly
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100

_graders: dict[str, Any] = {}   # backend -> Grader: kept for the life of the worker (collected tests cached)
_hidden: dict[str, Any] = {}    # exercise version -> HiddenText


def _log(message: str) -> None:
    sys.stderr.write(f"{datetime.now().isoformat(timespec='seconds')} [{os.getpid()}] {one_line(message)}\n")
    sys.stderr.flush()


def _grader(backend: str) -> Any:
    if backend not in _graders:
        from ..pipeline import Grader
        _graders[backend] = Grader(backend, progress=_log)
    return _graders[backend]


def _hidden_text(exercise: Any) -> Any:
    if exercise.version_hash not in _hidden:
        from ..scrub import HiddenText
        _hidden[exercise.version_hash] = HiddenText.from_exercise(exercise)
    return _hidden[exercise.version_hash]


def _short(text: str) -> str:
    text = one_line(text)
    return text if len(text) <= REASON_MAX else text[:REASON_MAX - 1] + "…"


def candidate_failure_reason(report: dict[str, Any]) -> str | None:
    """Why a report's run counts as a candidate failure (timed out, out of memory, crashed), or None."""
    run = report["run"]
    for entry in run["runs"]:
        if entry["timed_out"]:
            return f"timed out: the {entry['what']} run hit its wall-clock limit"
        if entry["oom_killed"]:
            return f"out of memory: the {entry['what']} run was killed at its memory limit"
    if run["timed_out"]:
        return "timed out: a run hit its wall-clock limit"
    if run["oom_killed"]:
        return "out of memory: a run was killed at its memory limit"
    if not run["complete"]:
        return (f"crashed: the test runner ended before reporting the end of the run "
                f"(exit code {run['exit_code']})")
    return None


def inconclusive_timing(report: dict[str, Any]) -> str | None:
    """A latency flag saying a case could not be timed cleanly (an infrastructure matter), or None."""
    for section in report.get("latency", []):
        for flag in section.get("flags", []):
            if INCONCLUSIVE_MARK in flag:
                return f"timing inconclusive ({section.get('check')}): {flag}"
    return None


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem or kernel cannot
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def write_outputs(out_dir: Path, files: dict[str, str]) -> None:
    """Replace out_dir by a folder holding exactly files (relative path -> text), atomically: the
    files are written into a temporary sibling that then takes out_dir's place in one rename (an
    exchange when out_dir exists), so a reader sees the old folder or the new one, never a mix."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{PARTIAL}", dir=out_dir.parent))
    try:
        mask = os.umask(0o022)
        os.umask(mask)
        staged.chmod(0o777 & ~mask)
        for rel, text in files.items():
            target = staged / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        if out_dir.exists() or out_dir.is_symlink():
            if not _rename_exchange(staged, out_dir):  # two steps: out_dir is briefly absent
                old = out_dir.with_name(f".{out_dir.name}{PARTIAL}old-{os.getpid()}")
                os.rename(out_dir, old)
                os.rename(staged, out_dir)
                staged = old
        else:
            os.rename(staged, out_dir)
            return
    finally:
        if staged.exists():
            remove_tree(staged)


def report_files(report: dict[str, Any], view: dict[str, Any]) -> dict[str, str]:
    """The files of one candidate's folder: the grader view and, under candidate/, the candidate view."""
    from ..report import to_markdown
    return {"report.json": json.dumps(report, indent=2) + "\n", "report.md": to_markdown(report),
            f"{CANDIDATE_VIEW}/report.json": json.dumps(view, indent=2) + "\n",
            f"{CANDIDATE_VIEW}/report.md": to_markdown(view)}


def grade_one(task: GradeTask) -> GradeOutcome:
    """Grade task's submission, write its reports into task.out_dir, and say how it went."""
    clock = time.monotonic()

    def outcome(result: Result, reason: str = "", percent: float | None = None) -> GradeOutcome:
        return GradeOutcome(candidate=task.candidate, key=task.key, attempt=task.attempt, result=result,
                            reason=_short(reason), percent=percent, duration_s=round(time.monotonic() - clock, 3))

    _log(f"{task.candidate}: attempt {task.attempt} of key {task.key[:12]} ({task.submission})")
    try:
        os.environ["MLGRADE_HOME"] = task.exercise_home
        from ..exercises import load_exercise
        from ..report import candidate_view, validate_report
        try:  # the exercise itself: a problem here is never the candidate's
            exercise = load_exercise(task.exercise)
            grader = _grader(task.backend)
            if any(check.kind == "pytest" for check in exercise.manifest.checks):
                grader.collect(exercise)  # the tests must collect against the starter (cached per worker)
        except BadInput as exc:
            return outcome("infra_failure", f"the exercise cannot be graded: {exc}")
        try:
            report = grader.grade(exercise, Path(task.submission), device=task.device, seed=task.seed)
        except SubmissionRefused as exc:  # refused at intake: bad archive, missing file, syntax error, ...
            return outcome("candidate_failure", str(exc))
        except BadInput as exc:  # the exercise's own problem (a spec or answer key that will not load)
            return outcome("infra_failure", f"the exercise cannot be graded: {exc}")
        inconclusive = inconclusive_timing(report)
        if inconclusive:
            return outcome("infra_failure", inconclusive)
        view = candidate_view(report, _hidden_text(exercise))
        validate_report(view)
        write_outputs(Path(task.out_dir), report_files(report, view))
        percent = float(report["score"]["percent"])
        failure = candidate_failure_reason(report)
        result = outcome("candidate_failure", failure, percent) if failure else outcome("graded", "", percent)
        _log(f"{task.candidate}: {result.result} {percent:.1f}% {result.reason}")
        return result
    except InfraError as exc:
        _log(f"{task.candidate}: infrastructure: {exc}")
        return outcome("infra_failure", str(exc))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a grader bug or an OS failure: retryable, and logged in full
        _log(f"{task.candidate}: unexpected {type(exc).__name__} (traceback below)")
        sys.stderr.write(traceback.format_exc())
        return outcome("infra_failure", f"unexpected {type(exc).__name__} in the grader: {exc}")
