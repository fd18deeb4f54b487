"""`mlgrade validate`: prove an exercise grades what it claims to grade.

An exercise is valid when its reference scores 100%, its starter at most 10%, every
calibration submission lands in its band and loses points somewhere, every hidden test
passes on the reference and fails on the starter (unless declared otherwise), every test
belongs to exactly one check, every hint names collected tests and quotes none of their
parameters (grader/hints.py; the rest of a hint's checks run whenever the exercise loads),
and repeated gradings give identical scores (a latency check, which is measured, may move
by one scoring step).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .exercises import Exercise
from .checks import KINDS
from .hints import collected_problems
from .scoring import STEP
from .pipeline import Grader, resolve_device

STARTER_MAX_PERCENT = 10.0


@dataclass
class Validation:
    exercise: Exercise
    problems: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)  # submission name -> percent
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # submission name -> its gradings

    @property
    def valid(self) -> bool:
        return not self.problems

    def line(self) -> str:
        parts = ", ".join(f"{name} {pct:.1f}%" for name, pct in self.scores.items())
        verdict = "valid" if self.valid else f"INVALID: {self.problems[0]}" + (
            f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else "")
        return f"{self.exercise.id} ({parts}) {verdict}" if parts else f"{self.exercise.id} {verdict}"


def _fingerprint(report: dict[str, Any]) -> tuple:
    """What must be identical across repeated gradings: every outcome and every deterministic score.
    Measured checks (latency) are not computed: they are compared with `_measured_points` instead."""
    checks = [c for c in report["checks"] if not _measured(c)]
    return (tuple((c["id"], c["points"]) for c in checks),
            tuple((t["nodeid"], t["outcome"]) for c in checks for t in c["tests"]))


def _measured(check: dict[str, Any]) -> bool:
    """A check whose points come from timings: they may move by one scoring step between gradings."""
    return KINDS[check["kind"]].measured


def _measured_points(report: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {c["id"]: (c["points"], c["max_points"]) for c in report["checks"] if _measured(c)}


def _measured_disagreement(reports: list[dict[str, Any]]) -> str | None:
    """A measured (latency) check may move by one scoring step (a tenth of its points) between gradings, no more:
    timing on a shared machine is noisy, the quantisation absorbs most of it, and more is a real problem."""
    for check_id, (points, maximum) in _measured_points(reports[0]).items():
        seen = [_measured_points(r)[check_id][0] for r in reports]
        if max(seen) - min(seen) > maximum * STEP + 1e-6:
            kind = next(c["kind"] for c in reports[0]["checks"] if c["id"] == check_id)
            return f"{kind} check {check_id} scored {', '.join(f'{p:g}' for p in seen)} (more than one step apart)"
    return None


def _outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {t["nodeid"]: t["outcome"] for c in report["checks"] for t in c["tests"]}


def _ownership_problems(exercise: Exercise, expected: list[str]) -> list[str]:
    problems = []
    checks = exercise.manifest.checks
    for nodeid in expected:
        owners = [c.id for c in checks if c.owns(nodeid)]
        if len(owners) != 1:
            problems.append(f"test {nodeid} belongs to {len(owners)} checks ({', '.join(owners) or 'none'}); "
                            "it must belong to exactly one")
    for check in checks:
        if check.kind == "pytest" and not any(check.owns(n) for n in expected):
            problems.append(f"check {check.id} matches no collected test")
    for nodeid in exercise.manifest.starter_passes:
        if nodeid not in expected:
            problems.append(f"starter_passes names {nodeid}, which is not a collected test")
    return problems


def validate_exercise(grader: Grader, exercise: Exercise, repeat: int = 1) -> Validation:
    """Grade reference, starter and calibrations (each `repeat` times) and list every problem."""
    result = Validation(exercise)
    problems = result.problems
    if not exercise.reference.is_dir():
        problems.append(f"no reference solution at {exercise.reference}")
        return result
    has_pytest = any(c.kind == "pytest" for c in exercise.manifest.checks)
    expected = grader.collect(exercise) if has_pytest else []
    problems += _ownership_problems(exercise, expected)
    problems += collected_problems(exercise, expected)  # hint keys name collected tests, no parameter quoted
    graded_here = [c for c in exercise.manifest.checks if c.device in ("any", resolve_device(exercise, "auto"))]
    hidden = [n for n in expected if n.startswith("hidden/") and any(c.owns(n) for c in graded_here)]

    def grade(name: str, path) -> dict[str, Any]:
        reports = [grader.grade(exercise, path) for _ in range(repeat)]
        if len({_fingerprint(r) for r in reports}) > 1:
            problems.append(f"{name}: {repeat} gradings disagree: "
                            f"{', '.join(str(r['score']['percent']) for r in reports)}")
        noisy = _measured_disagreement(reports)
        if noisy:
            problems.append(f"{name}: {noisy}")
        result.scores[name] = reports[0]["score"]["percent"]
        graded[name] = reports
        tampering = reports[0].get("integrity", {}).get("evidence", [])
        deliberate = name in flagged_on_purpose and all(e.startswith("static scan") for e in tampering)
        if tampering and not deliberate:  # an honest submission with evidence: sentinels or scan misfire
            problems.append(f"{name}: verdict-tampering evidence: {tampering[0]}")
        return reports[0]

    # A calibration that tampers on purpose says "flagged" in its flaw; its scan findings are expected.
    flagged_on_purpose = {c.name for c in exercise.manifest.calibration if "flagged" in c.flaw}

    graded = result.reports
    reference = grade("reference", exercise.reference)
    for report in graded["reference"]:
        if report["score"]["percent"] != 100.0:
            lost = [r for c in report["checks"] for r in c["reasons"]]
            problems.append(f"reference scores {report['score']['percent']}%, not 100%: {lost[0] if lost else ''}")
            break
    ref_outcomes = _outcomes(reference)

    starter = grade("starter", exercise.starter)
    if starter["score"]["percent"] > STARTER_MAX_PERCENT:
        problems.append(f"starter scores {starter['score']['percent']}%, over {STARTER_MAX_PERCENT:g}%")
    starter_outcomes = _outcomes(starter)
    for nodeid in hidden:
        if ref_outcomes.get(nodeid) != "passed":
            problems.append(f"hidden test {nodeid} does not pass on the reference ({ref_outcomes.get(nodeid)})")
        meant = nodeid in exercise.manifest.starter_passes
        if starter_outcomes.get(nodeid) == "passed" and not meant:
            problems.append(f"hidden test {nodeid} passes on the starter (declare it in starter_passes with a "
                            "reason if that is meant)")

    declared = {c.name for c in exercise.manifest.calibration}
    on_disk = {p.name for p in (exercise.root / "calibration").glob("*") if p.is_dir()}
    for name in sorted(on_disk - declared):
        problems.append(f"calibration/{name} is not declared in exercise.toml")
    for calibration in exercise.manifest.calibration:
        path = exercise.calibration(calibration.name)
        if not path.is_dir():
            problems.append(f"calibration {calibration.name}: folder {path} is missing")
            continue
        report = grade(calibration.name, path)
        low, high = calibration.band
        outside = [r["score"]["percent"] for r in graded[calibration.name] if not low <= r["score"]["percent"] <= high]
        if outside:
            problems.append(f"calibration {calibration.name} scores {outside[0]}%, outside its band [{low:g}, {high:g}]")
        if all(c["status"] == "pass" for c in report["checks"]):
            problems.append(f"calibration {calibration.name} loses no points on any check")
        problems += _deduction_problems(calibration, report, calibration.name in flagged_on_purpose)
    return result


def _deduction_problems(calibration, report: dict[str, Any], flagged: bool) -> list[str]:
    """One bug, one deduction: a calibration holds one flaw, and its manifest entry names the checks
    that flaw may cost. No other check may lose points, and every named check graded here must (a
    latency check is measured: it may lose one scoring step anywhere, and is not required to lose).
    The flaw must fail a hidden test, unless it is priced only by measured or modelled checks
    (latency, model), or is tampering flagged on purpose (its pytest verdicts are void instead)."""
    problems = []
    graded = {c["id"]: c for c in report["checks"]}  # checks of another device are left out
    for check in report["checks"]:
        lost = check["max_points"] - check["points"]
        noise = check["max_points"] * STEP + 1e-6 if _measured(check) else 1e-9
        if lost > noise and check["id"] not in calibration.checks:
            problems.append(f"calibration {calibration.name} loses points in check {check['id']}, which its "
                            f"manifest entry does not name (checks = {', '.join(calibration.checks)})")
    for check_id in calibration.checks:
        check = graded.get(check_id)
        if check and not _measured(check) and check["points"] >= check["max_points"]:
            problems.append(f"calibration {calibration.name} names check {check_id} but loses nothing there")
    named = [graded[i] for i in calibration.checks if i in graded]
    tested = [c for c in named if not KINDS[c["kind"]].priced_by_measurement]
    fails_hidden = any(t["outcome"] != "passed" for c in report["checks"] if c["visibility"] == "hidden"
                       for t in c["tests"])
    if tested and not flagged and not fails_hidden:
        problems.append(f"calibration {calibration.name} fails no hidden test")
    return problems
