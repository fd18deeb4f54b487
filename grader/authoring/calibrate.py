"""`mlgrade calibrate ID NAME --from FOLDER --flaw "..."`: a one-change copy of the reference becomes
a calibration submission with its measured band.

FOLDER is taken in like any submission (grader/intake.py), refused when it equals the reference,
graded `repeat` times, and refused again when its gradings disagree, when it loses no points, or
when `mlgrade validate` would refuse its entry (it must fail a hidden test; no tampering evidence
unless its flaw says "flagged"). Then its files go to exercises/ID/calibration/NAME and an entry
is appended as text to exercise.toml, so the rest of the file (comments, order) is untouched; the
manifest is loaded again to prove it parses, and restored byte for byte if it does not.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..checks.base import SLUG
from ..errors import BadInput, InfraError
from ..exercises import Exercise, load_exercise
from ..intake import intake
from ..manifest import Calibration, load_manifest
from ..outdir import shown

if TYPE_CHECKING:
    from ..validate import Validation


@dataclass(frozen=True)
class CalibrateConfig:
    repeat: int = 3             # gradings of the candidate folder; they must agree
    band_margin: float = 5.0    # band = measured +- margin (percent), widened to whole numbers
    band_cap: tuple[float, float] = (0.0, 99.0)  # a calibration never claims full marks


CONFIG = CalibrateConfig()


@dataclass(frozen=True)
class Calibrated:
    entry: Calibration
    percents: list[float]        # one per grading
    folder: Path                 # exercises/ID/calibration/NAME
    files: tuple[str, ...]
    validation: "Validation"     # of the whole exercise, the new entry included


def band_for(percents: list[float], config: CalibrateConfig = CONFIG) -> tuple[int, int]:
    """measured +- margin, outward to whole percents, capped at [0, 99]."""
    low, high = config.band_cap
    return (int(max(low, math.floor(min(percents) - config.band_margin + 1e-9))),
            int(min(high, math.ceil(max(percents) + config.band_margin - 1e-9))))


def measured_text(percents: list[float]) -> str:
    low, high = min(percents), max(percents)
    return f"{low:.1f}%" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}%"


def entry_text(entry: Calibration, percents: list[float]) -> str:
    """The [[calibration]] entry as TOML text, in the style of the shipped manifests. JSON strings
    are TOML basic strings when no character needs TOML's escapes beyond JSON's (the flaw is printable)."""
    low, high = (f"{b:g}" for b in entry.band)
    return (f"[[calibration]]\n"
            f"name = {json.dumps(entry.name)}  # measured {measured_text(percents)}\n"
            f"band = [{low}, {high}]\n"
            f"flaw = {json.dumps(entry.flaw, ensure_ascii=False)}\n"
            f"checks = [{', '.join(json.dumps(c) for c in entry.checks)}]\n")


def _write_atomic(path: Path, data: bytes) -> None:
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def append_entry(manifest_path: Path, entry: Calibration, percents: list[float]) -> None:
    """Append the entry as text, then prove the file parses with the entry as meant; else restore it."""
    original = manifest_path.read_bytes()
    separator = b"\n" if original.endswith(b"\n") else b"\n\n"
    _write_atomic(manifest_path, original + (separator if original else b"") + entry_text(entry, percents).encode())
    try:
        try:
            parsed = load_manifest(manifest_path).calibration
        except BadInput as exc:
            raise BadInput(f"{shown(manifest_path)} does not parse with the new [[calibration]] entry appended "
                           f"({str(exc).removeprefix(str(manifest_path) + ': ')}); it was left as it was") from None
        if not parsed or parsed[-1] != entry:
            raise BadInput(f"{shown(manifest_path)}: the appended [[calibration]] entry does not read back as "
                           "written (is calibration defined another way in the file?); it was left as it was")
    except BaseException:
        _write_atomic(manifest_path, original)
        raise


def _overlaid(*layers: Path) -> dict[str, bytes]:
    """relative path -> bytes of the workspace these folders make, later ones over earlier ones."""
    files: dict[str, bytes] = {}
    for layer in layers:
        for path in sorted(layer.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files[path.relative_to(layer).as_posix()] = path.read_bytes()
    return files


def _check_request(exercise: Exercise, name: str, flaw: str, repeat: int) -> None:
    if not re.fullmatch(SLUG, name):
        raise BadInput(f"calibration name {shown(name)}: use lower-case letters, digits and '-', "
                       "starting with a letter or digit")
    if name in {c.name for c in exercise.manifest.calibration} or os.path.lexists(exercise.calibration(name)):
        raise BadInput(f"exercise {exercise.id} already has a calibration called {name}; pick another name")
    if not flaw.strip() or not flaw.isprintable():
        raise BadInput("--flaw: say the flaw in one sentence on one line")
    if repeat < 1:
        raise BadInput("--repeat must be at least 1")
    if not exercise.reference.is_dir():
        raise BadInput(f"exercise {exercise.id} has no reference solution at {shown(exercise.reference)}")


def _unusable(folder: str, reports: list[dict[str, Any]], lost: list[str]) -> str | None:
    """Why these gradings cannot make a calibration at all: they disagree, or lose (almost) nothing."""
    from ..validate import _fingerprint, _measured_disagreement

    percents = [r["score"]["percent"] for r in reports]
    if len({_fingerprint(r) for r in reports}) > 1 or _measured_disagreement(reports):
        return (f"{shown(folder)}: its {len(reports)} gradings disagree ({', '.join(f'{p:g}%' for p in percents)}); "
                "a calibration must grade the same every time")
    if max(percents) >= 100.0 or not lost:
        return (f"{shown(folder)} scores {max(percents):g}% and loses points nowhere: its change is not one the "
                "tests catch; a calibration must lose points")
    if max(percents) > CONFIG.band_cap[1]:
        return (f"{shown(folder)} scores {max(percents):g}%: a calibration must lose more than "
                f"{100 - CONFIG.band_cap[1]:g}% to be told apart from the reference")
    return None


def _invalid(folder: str, reports: list[dict[str, Any]], entry: Calibration) -> str | None:
    """Why `mlgrade validate` would refuse this entry, judged on its gradings before anything is written."""
    from ..validate import _deduction_problems

    flagged = "flagged" in entry.flaw
    for report in reports:
        evidence = report.get("integrity", {}).get("evidence", [])
        if evidence and not (flagged and all(e.startswith("static scan") for e in evidence)):
            return (f"{shown(folder)} carries verdict-tampering evidence ({evidence[0]}); a calibration that "
                    "tampers on purpose says 'flagged' in its flaw")
        problems = _deduction_problems(entry, report, flagged)
        if problems:
            return f"{problems[0]}: validate would refuse it (make the flaw one a hidden test catches)"
    return None


def _lost_checks(exercise: Exercise, reports: list[dict[str, Any]]) -> list[str]:
    lost = {c["id"] for r in reports for c in r["checks"] if c["points"] < c["max_points"] - 1e-9}
    return [c.id for c in exercise.manifest.checks if c.id in lost]  # in manifest order


def _place(source: Path, dest: Path) -> list[Path]:
    """Copy source to dest (which must not exist) through a staging folder beside it: all or nothing.
    Returns what to remove to undo it: dest, and its parent when this made it."""
    created = [] if dest.parent.is_dir() else [dest.parent]
    for folder in created:
        folder.mkdir()
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        os.rename(staging, dest)
    except BaseException:
        _remove([staging, *created])
        raise
    return [dest, *created]


def _remove(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def calibrate(exercise_id: str, name: str, folder: str, flaw: str, *, repeat: int = CONFIG.repeat,
              backend: str = "auto", progress: Callable[[str], None] | None = None) -> Calibrated:
    """Grade FOLDER, refuse it unless it makes a valid calibration, write it, then validate the exercise."""
    from ..pipeline import Grader  # imported late: `mlgrade list` imports this module's command too
    from ..validate import validate_exercise

    exercise = load_exercise(exercise_id)
    flaw = flaw.strip()
    _check_request(exercise, name, flaw, repeat)
    with tempfile.TemporaryDirectory(prefix="mlgrade-calibrate-") as tmp:
        submission = intake(Path(folder), Path(tmp), exercise.manifest.required_files, starter=exercise.starter)
        if _overlaid(exercise.starter, submission.root) == _overlaid(exercise.starter, exercise.reference):
            raise BadInput(f"{shown(folder)} is identical to the reference of {exercise.id}: a calibration is a "
                           "copy of the reference with one change")
        grader = Grader(backend, progress=progress)
        grader.progress(f"grading {shown(folder)} {repeat} time{'s' if repeat > 1 else ''} (taken in as {tmp})")
        reports = [grader.grade(exercise, submission.root) for _ in range(repeat)]
        percents = [r["score"]["percent"] for r in reports]
        lost = _lost_checks(exercise, reports)
        refusal = _unusable(folder, reports, lost)
        if refusal is None:
            entry = Calibration(name=name, band=band_for(percents), flaw=flaw, checks=lost)
            refusal = _invalid(folder, reports, entry)
        if refusal:
            raise BadInput(refusal)
        dest = exercise.calibration(name)
        try:
            placed = _place(submission.root, dest)
            try:
                append_entry(exercise.root / "exercise.toml", entry, percents)
            except BaseException:
                _remove(placed)
                raise
        except OSError as exc:
            raise InfraError(f"cannot write calibration {name} of {exercise.id}: {exc.strerror or exc}") from None
    validation = validate_exercise(grader, load_exercise(str(exercise.root)), repeat=1)
    return Calibrated(entry=entry, percents=percents, folder=dest, files=submission.files, validation=validation)
