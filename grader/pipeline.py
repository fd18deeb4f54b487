"""The grading pipeline: intake -> workspace -> collect (trusted) -> run (sandboxed) -> score -> report.

Candidate code runs only inside the sandbox. The host copies files in, reads one
size-capped results file out, and decides every verdict from the expected test list,
which comes from a separate sandbox run on the trusted starter code.
"""
from __future__ import annotations

import json
import platform
import secrets
import shutil
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from sandbox import BackendUnavailable, Limits, Mount, RunResult, SandboxError, get_backend

from .errors import BadInput, InfraError
from .exercises import Exercise
from .intake import Submission, intake
from .report import SCHEMA_ID, UNSANDBOXED, validate_report
from .results import RunResults, read_results
from .scoring import percent, score_checks

HARNESS = Path(__file__).resolve().parent / "harness"
BOX = "/mlgrade"  # where things appear inside the sandbox
TAIL = 4000  # characters of sandbox stdout/stderr kept in the grader view
COLLECT_WALL_S = 180.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _short(path: Path) -> str:
    """path relative to the current folder when it is inside it (shorter progress lines)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def host_has_gpu() -> bool:
    return Path("/dev/nvidiactl").exists()


def resolve_device(exercise: Exercise, requested: str) -> str:
    """cpu or cuda for this grading; InfraError when the exercise needs a GPU the host lacks."""
    needs = exercise.manifest.device
    if requested == "auto":
        requested = {"cpu": "cpu", "cuda": "cuda", "any": "cuda" if host_has_gpu() else "cpu"}[needs]
    if requested == "cpu" and needs == "cuda":
        raise BadInput(f"exercise {exercise.id} needs a GPU; --device cpu cannot grade it")
    if requested == "cuda" and not host_has_gpu():
        raise InfraError("--device cuda: no NVIDIA GPU on this host (/dev/nvidiactl is missing)")
    return requested


def _overlay(starter: Path, submission: Path, dest: Path) -> None:
    """Workspace = starter files, then the submission's files over them."""
    shutil.copytree(starter, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(submission, dest, dirs_exist_ok=True)


class Grader:
    """Grades submissions with one backend; remembers each exercise's collected tests."""

    def __init__(self, backend: str = "auto", progress: Callable[[str], None] | None = None) -> None:
        try:
            self.backend = get_backend(backend)
        except BackendUnavailable as exc:
            raise InfraError(str(exc)) from None
        self.progress = progress or (lambda message: None)
        self._collected: dict[str, list[str]] = {}

    # -- sandbox runs -------------------------------------------------------------------
    def _limits(self, exercise: Exercise, wall_s: float | None = None) -> Limits:
        spec = exercise.manifest.limits
        return Limits(wall_s=wall_s or spec.wall_s, cpus=spec.cpus, memory_mb=spec.memory_mb, pids=spec.pids,
                      output_bytes=spec.output_kb * 1024, file_size_mb=spec.file_size_mb)

    def _run_harness(self, exercise: Exercise, code: Path, config: dict[str, Any], device: str,
                     seed: int, wall_s: float | None = None) -> tuple[RunResult, RunResults]:
        with tempfile.TemporaryDirectory(prefix="mlgrade-run-") as tmp:
            config_dir, out_dir = Path(tmp, "config"), Path(tmp, "out")
            config_dir.mkdir()
            out_dir.mkdir()
            out_dir.chmod(0o777)  # the sandbox user may not be the grader's user
            (config_dir / "config.json").write_text(json.dumps(config))
            mounts = [Mount(code, f"{BOX}/submission"), Mount(exercise.tests, f"{BOX}/tests"),
                      Mount(HARNESS, f"{BOX}/harness"), Mount(config_dir, f"{BOX}/config"),
                      Mount(out_dir, f"{BOX}/out", writable=True)]
            limits = self._limits(exercise, wall_s)
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
                   "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": str(seed), "MLGRADE_SEED": str(seed),
                   "OMP_NUM_THREADS": str(limits.cpus), "MKL_NUM_THREADS": str(limits.cpus),
                   "MLGRADE_TESTS": f"{BOX}/tests", "MLGRADE_SUBMISSION": f"{BOX}/submission",
                   "MLGRADE_OUT": f"{BOX}/out", "MLGRADE_DEVICE": device}
            argv = [*self.backend.python(), f"{BOX}/harness/runner.py", f"{BOX}/config/config.json"]
            key = secrets.token_hex(32).encode()  # signs the runner's results; see harness/runner.py
            try:
                run = self.backend.run(argv, mounts=mounts, env=env, workdir=f"{BOX}/tests", limits=limits,
                                       device=device, stdin=key)  # type: ignore[arg-type]
            except SandboxError as exc:
                raise InfraError(f"sandbox backend {self.backend.name} failed: {exc}") from None
            results = read_results(out_dir / "results.jsonl", key)
        if not results.started and not (run.timed_out or run.oom_killed):
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise InfraError(f"the test runner did not start in the {self.backend.name} sandbox "
                             f"(exit code {run.exit_code}): {last}")
        return run, results

    def collect(self, exercise: Exercise) -> list[str]:
        """The node ids the exercise's tests define, collected against the trusted starter."""
        key = exercise.version_hash
        if key not in self._collected:
            self.progress(f"collecting the tests of {exercise.id}")
            paths = [p for p in ("public", "hidden") if (exercise.tests / p).is_dir()]
            _, results = self._run_harness(exercise, exercise.starter, {"mode": "collect", "paths": paths},
                                           "cpu", seed=0, wall_s=min(COLLECT_WALL_S, exercise.manifest.limits.wall_s))
            if results.collect_errors:
                raise BadInput(f"exercise {exercise.id}: its tests do not collect against the starter: "
                               f"{results.collect_errors[0].strip().splitlines()[-1][:300]}")
            if not results.collected:
                raise BadInput(f"exercise {exercise.id}: no tests were collected")
            self._collected[key] = results.collected
        return self._collected[key]

    # -- grading ------------------------------------------------------------------------
    def grade(self, exercise: Exercise, submission_path: Path, *, device: str = "auto",
              seed: int = 0) -> dict[str, Any]:
        """Grade one submission; return the grader-view report (validated against the schema)."""
        started, clock = _now(), time.monotonic()
        device = resolve_device(exercise, device)
        with tempfile.TemporaryDirectory(prefix="mlgrade-work-") as tmp:
            Path(tmp, "in").mkdir()
            submission = intake(submission_path, Path(tmp, "in"), exercise.manifest.required_files)
            expected = self.collect(exercise)
            workspace = Path(tmp, "workspace")
            _overlay(exercise.starter, submission.root, workspace)
            self.progress(f"{exercise.id}: running {len(expected)} tests on {_short(submission_path)} "
                          f"({self.backend.name}, {device})")
            spec = exercise.manifest.limits
            config = {"mode": "run", "nodeids": expected, "default_timeout": spec.test_timeout_s,
                      "timeouts": {p: c.timeout_s for c in exercise.manifest.checks if c.timeout_s for p in c.tests}}
            run, results = self._run_harness(exercise, workspace, config, device, seed)
        report = self._report(exercise, submission, expected, run, results, device, seed, started,
                              time.monotonic() - clock)
        validate_report(report)
        return report

    def _report(self, exercise: Exercise, submission: Submission, expected: list[str], run: RunResult,
                results: RunResults, device: str, seed: int, started: str, duration: float) -> dict[str, Any]:
        scores = score_checks(exercise.manifest, expected, results)
        return {
            "schema": SCHEMA_ID,
            "view": "grader",
            "exercise": {"id": exercise.id, "title": exercise.manifest.title, "version_hash": exercise.version_hash},
            "submission": {"source": submission.source, "sha256": submission.sha256, "files": list(submission.files)},
            "environment": {
                "backend": self.backend.name, "sandboxed": self.backend.isolated, "device": device, "seed": seed,
                "mlgrade": _version("mlgrade"), "python": results.env.get("python"),
                "torch": results.env.get("torch"), "triton": results.env.get("triton"),
                "host": platform.platform(), "enforced_limits": list(run.enforced), "details": dict(run.details),
            },
            "timing": {"started_at": started, "finished_at": _now(), "duration_s": round(duration, 3)},
            "score": {"points": round(sum(s.earned for s in scores), 4), "max_points": exercise.manifest.total_points,
                      "percent": percent(scores)},
            "checks": [{
                "id": s.check.id, "title": s.check.title, "kind": s.check.kind, "visibility": s.check.visibility,
                "points": s.earned, "max_points": s.check.points, "partial_credit": s.check.partial_credit,
                "status": s.status, "passed": s.passed,
                "total": len(s.tests), "reasons": s.reasons(),
                "tests": [{"nodeid": t.nodeid, "outcome": t.outcome, "duration_s": t.duration_s, "message": t.message}
                          for t in s.tests],
            } for s in scores],
            "run": {
                "exit_code": run.exit_code, "timed_out": run.timed_out, "oom_killed": run.oom_killed,
                "wall_s": round(run.wall_s, 3), "peak_memory_mb": run.peak_memory_mb, "complete": results.done,
                "malformed_lines": results.malformed_lines + results.unauthenticated_lines,
                "stdout_tail": run.stdout[-TAIL:], "stderr_tail": run.stderr[-TAIL:],
            },
            "warnings": self._warnings(exercise, expected, run, results),
        }

    def _warnings(self, exercise: Exercise, expected: list[str], run: RunResult, results: RunResults) -> list[str]:
        limits = exercise.manifest.limits
        warnings = [] if self.backend.isolated else [UNSANDBOXED]
        if run.timed_out:
            warnings.append(f"the test run hit its wall-clock limit of {limits.wall_s:g} s; "
                            "tests without a result count as failed")
        if run.oom_killed:
            warnings.append(f"the test run ran out of memory (limit {limits.memory_mb} MiB)")
        if not results.done and not (run.timed_out or run.oom_killed):
            warnings.append(f"the test runner did not report the end of the run (exit code {run.exit_code})")
        if results.truncated:
            warnings.append("the results file was over its size cap; the rest was ignored")
        if results.malformed_lines:
            warnings.append(f"{results.malformed_lines} malformed result lines were ignored")
        if results.unauthenticated_lines:
            warnings.append(f"{results.unauthenticated_lines} result lines were not signed by the test runner "
                            "(written by candidate code?) and were ignored")
        if results.conflicting:
            warnings.append(f"{len(results.conflicting)} tests were reported twice with different outcomes "
                            "(the first non-pass was kept)")
        unknown = set(results.tests) - set(expected)
        if unknown:
            warnings.append(f"{len(unknown)} results for tests the exercise does not define were ignored")
        if run.stdout_truncated or run.stderr_truncated:
            warnings.append("the test run's output was over its cap and was truncated")
        return warnings


def write_reports(report: dict[str, Any], out: Path, markdown: str) -> None:
    """Write report.json and report.md into out (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown, encoding="utf-8")

