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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sandbox import BackendUnavailable, Limits, Mount, RunResult, SandboxError, get_backend

from .cleanup import remove_tree
from .errors import BadInput, InfraError
from .exercises import Exercise
from .checks import KINDS
from .checks.base import Context, Kind, Outcome
from .checks.probe_output import ProbeOutput, read_probe
from .harness.wire import ENV_VALUE_CAP, EVENT_STARTED, RESULTS_FILE, STARTED
from .hints import shown_hints
from .integrity import Integrity, scan_evidence
from .machine_lock import machine_slot
from .scan import scan_submission
from .intake import Submission, intake
from .report import SCHEMA_ID, UNSANDBOXED, encodable, validate_report
from .results import RunResults, read_results
from .scoring import CheckScore, percent

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


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[-1][:500]


def _short(path: Path) -> str:
    """path relative to the current folder when it is inside it (shorter progress lines)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _harness_started(run: RunResult) -> bool:
    """True when the harness printed its start marker (the first bytes of stdout, which are kept)."""
    return run.stdout.lstrip().startswith(STARTED)


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
        self._cache: dict[Any, Any] = {}  # for check kinds: deterministic results kept across gradings

    # -- sandbox runs -------------------------------------------------------------------
    def _limits(self, exercise: Exercise, wall_s: float | None = None) -> Limits:
        spec = exercise.manifest.limits
        return Limits(wall_s=wall_s or spec.wall_s, cpus=spec.cpus, memory_mb=spec.memory_mb, pids=spec.pids,
                      output_bytes=spec.output_kb * 1024, file_size_mb=spec.file_size_mb)

    @contextmanager
    def _sandbox(self, exercise: Exercise, code: Path, script: str, config: dict[str, Any], device: str, seed: int,
                 *, stdin: bytes | None = None, wall_s: float | None = None,
                 env: dict[str, str] | None = None, tests: Path | None = None) -> Iterator[tuple[RunResult, Path]]:
        """Run one harness script in the sandbox over `code`; yield the result and the out folder,
        which is removed when the block ends (read what you need inside it)."""
        with tempfile.TemporaryDirectory(prefix="mlgrade-run-") as tmp:
            config_dir, out_dir = Path(tmp, "config"), Path(tmp, "out")
            config_dir.mkdir()
            out_dir.mkdir()
            out_dir.chmod(0o777)  # the sandbox user may not be the grader's user
            (config_dir / "config.json").write_text(json.dumps(config))
            mounts = [Mount(code, f"{BOX}/submission"), Mount(tests or exercise.tests, f"{BOX}/tests"),
                      Mount(exercise.starter, f"{BOX}/baseline"), Mount(HARNESS, f"{BOX}/harness"),
                      Mount(config_dir, f"{BOX}/config"), Mount(out_dir, f"{BOX}/out", writable=True)]
            limits = self._limits(exercise, wall_s)
            full_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
                        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": str(seed), "MLGRADE_SEED": str(seed),
                        # HOME is writable: a .pth planted in the user site would run first in every
                        # later Python process (the venvs and image here already ignore it).
                        "PYTHONNOUSERSITE": "1",
                        "OMP_NUM_THREADS": str(limits.cpus), "MKL_NUM_THREADS": str(limits.cpus),
                        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": f"{BOX}/harness",
                        "MLGRADE_TESTS": f"{BOX}/tests", "MLGRADE_SUBMISSION": f"{BOX}/submission",
                        "MLGRADE_BASELINE": f"{BOX}/baseline", "MLGRADE_OUT": f"{BOX}/out",
                        "MLGRADE_DEVICE": device, **(env or {})}
            argv = [*self.backend.python(), f"{BOX}/harness/{script}", f"{BOX}/config/config.json"]
            try:
                try:
                    run = self.backend.run(argv, mounts=mounts, env=full_env, workdir=f"{BOX}/tests",
                                           limits=limits, device=device, stdin=stdin)  # type: ignore[arg-type]
                except SandboxError as exc:
                    raise InfraError(f"sandbox backend {self.backend.name} failed: {exc}") from None
                yield run, out_dir
            finally:
                remove_tree(out_dir)  # whatever the sandbox left there, however deep (cleanup.py)

    def _run_harness(self, exercise: Exercise, code: Path, config: dict[str, Any], device: str,
                     seed: int, wall_s: float | None = None, tests: Path | None = None) -> tuple[RunResult, RunResults]:
        """The pytest runner over `code`: its signed results (see harness/runner.py)."""
        key = secrets.token_hex(32).encode()  # signs the runner's results
        with self._sandbox(exercise, code, "runner.py", config, device, seed, stdin=key, wall_s=wall_s,
                           tests=tests) as (run, out):
            results = read_results(out / RESULTS_FILE, key)
        # The runner prints its marker before any candidate code exists: with it, a results file that
        # is missing or empty was deleted or truncated by candidate code, which is graded, not retried.
        if not results.started and not _harness_started(run) and not (run.timed_out or run.oom_killed):
            raise InfraError(f"the test runner did not start in the {self.backend.name} sandbox "
                             f"(exit code {run.exit_code}): {_last_line(run.stderr)}")
        return run, results

    def _probe(self, exercise: Exercise, code: Path, config: dict[str, Any], device: str, seed: int,
               judge: Callable[[ProbeOutput, Path], Any], env: dict[str, str] | None = None,
               wall_s: float | None = None) -> tuple[RunResult, Any]:
        """Run harness/probe.py over `code` and judge what it wrote while the out folder exists."""
        with self._sandbox(exercise, code, "probe.py", config, device, seed, env=env, wall_s=wall_s) as (run, out):
            probe = read_probe(out)
            if probe.first(EVENT_STARTED) is None and not _harness_started(run) and not (run.timed_out or run.oom_killed):
                raise InfraError(f"the probe did not start in the {self.backend.name} sandbox "
                                 f"(exit code {run.exit_code}): {_last_line(run.stderr)}")
            return run, judge(probe, out)

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
        """Grade one submission; return the grader-view report (validated against the schema).

        Each check kind (grader/checks/) grades its checks in registry order and returns their
        outcomes; this folds them into one report."""
        started, clock = _now(), time.monotonic()
        device = resolve_device(exercise, device)
        checks = [c for c in exercise.manifest.checks if c.device in ("any", device)]
        grading = _Grading(device=device, seed=seed)
        timed = any(KINDS[c.kind].measured for c in checks)  # then nothing else grades on this machine
        with tempfile.TemporaryDirectory(prefix="mlgrade-work-") as tmp:
            Path(tmp, "in").mkdir()
            submission = intake(submission_path, Path(tmp, "in"), exercise.manifest.required_files,
                                starter=exercise.starter)  # refuses paths that clash with the starter
            workspace = Path(tmp, "workspace")
            _overlay(exercise.starter, submission.root, workspace)
            grading.integrity.scan = scan_submission(submission.root)  # reads files, never runs them
            grading.integrity.add(scan_evidence(grading.integrity.scan))
            context = self._context(exercise, workspace, Path(tmp),
                                    f"{exercise.id}: {_short(submission_path)} ({self.backend.name}, {device})",
                                    device, seed)
            with machine_slot(timed, self.progress):  # the sandbox runs: a timed grading has the machine alone
                for kind in KINDS.values():
                    mine = [c for c in checks if c.kind == kind.name]
                    if mine:
                        for check_id, outcome in kind.grade(context, mine).items():
                            grading.fold(kind, outcome)
                            context.scores[check_id] = outcome.score
                            context.import_hung = context.import_hung or outcome.import_hung
        if grading.integrity.tampered:  # verdicts from the candidate's process are void (integrity.py)
            for check in checks:
                if KINDS[check.kind].candidate_verdicts:
                    context.scores[check.id] = grading.integrity.void(context.scores[check.id])
        scores = [context.scores[c.id] for c in checks]
        report = encodable(self._report(exercise, submission, scores, grading, started, time.monotonic() - clock))
        validate_report(report)
        return report

    def _context(self, exercise: Exercise, workspace: Path, scratch: Path, label: str, device: str,
                 seed: int) -> Context:
        def reference_workspace() -> Path:
            """The reference over the starter, made once per grading (model and latency checks share it)."""
            dest = scratch / "reference"
            if not dest.exists():
                _overlay(exercise.starter, exercise.reference, dest)
            return dest

        def run_harness(code: Path, config: dict[str, Any], device: str, seed: int, **kw: Any):
            return self._run_harness(exercise, code, config, device, seed, **kw)

        def probe(code: Path, config: dict[str, Any], device: str, seed: int, judge, **kw: Any):
            return self._probe(exercise, code, config, device, seed, judge, **kw)

        return Context(exercise=exercise, workspace=workspace, scratch=scratch, device=device, seed=seed,
                       label=label, progress=self.progress, run_harness=run_harness, probe=probe,
                       reference_workspace=reference_workspace, collect=lambda: self.collect(exercise),
                       cache=self._cache)

    def _report(self, exercise: Exercise, submission: Submission, scores: list[CheckScore], grading: "_Grading",
                started: str, duration: float) -> dict[str, Any]:
        runs = grading.runs
        main = runs[0][1] if runs else None
        report = {
            "schema": SCHEMA_ID,
            "view": "grader",
            "exercise": {"id": exercise.id, "title": exercise.manifest.title, "version_hash": exercise.version_hash},
            "submission": {"source": submission.source, "sha256": submission.sha256, "files": list(submission.files)},
            "environment": {
                "backend": self.backend.name, "sandboxed": self.backend.isolated, "device": grading.device,
                "seed": grading.seed, "mlgrade": _version("mlgrade"),
                "python": grading.env.get("python") or platform.python_version(),
                "torch": grading.env.get("torch") or _version("torch"),
                "triton": grading.env.get("triton") or _version("triton"),
                "host": platform.platform(), "enforced_limits": list(main.enforced) if main else [],
                "details": dict(main.details) if main else {},
            },
            "timing": {"started_at": started, "finished_at": _now(), "duration_s": round(duration, 3)},
            "score": {"points": round(sum(s.earned for s in scores), 4),
                      "max_points": sum(s.check.points for s in scores), "percent": percent(scores)},
            "checks": [{
                "id": s.check.id, "title": s.check.title, "kind": s.check.kind, "visibility": s.check.visibility,
                "points": s.earned, "max_points": s.check.points,
                "partial_credit": getattr(s.check, "partial_credit", True),
                "status": s.status, "passed": s.passed,
                "total": len(s.tests), "reasons": s.reasons(),
                "tests": [{"nodeid": t.nodeid, "outcome": t.outcome, "duration_s": t.duration_s, "message": t.message}
                          for t in s.tests],
                **({"hints": hints} if (hints := shown_hints(exercise.manifest, s.check, s.tests)) else {}),
            } for s in scores],
            "run": {
                "exit_code": main.exit_code if main else None,
                "timed_out": any(r.timed_out for _, r in runs), "oom_killed": any(r.oom_killed for _, r in runs),
                "wall_s": round(sum(r.wall_s for _, r in runs), 3),
                "peak_memory_mb": max((r.peak_memory_mb for _, r in runs if r.peak_memory_mb is not None),
                                      default=None),
                "complete": grading.complete, "malformed_lines": grading.malformed,
                "stdout_tail": main.stdout[-TAIL:] if main else "", "stderr_tail": main.stderr[-TAIL:] if main else "",
                "runs": [{"what": what, "exit_code": r.exit_code, "timed_out": r.timed_out,
                          "oom_killed": r.oom_killed, "wall_s": round(r.wall_s, 3)} for what, r in runs],
            },
            "warnings": self._warnings(exercise, grading),
            "integrity": grading.integrity.section(),
        }
        for name, entries in grading.sections.items():
            report[name] = entries
        return report

    def _warnings(self, exercise: Exercise, grading: "_Grading") -> list[str]:
        limits = exercise.manifest.limits
        warnings = [] if self.backend.isolated else [UNSANDBOXED]
        for what, run in grading.runs:
            if run.timed_out:
                warnings.append(f"{what}: the run hit its wall-clock limit of {limits.wall_s:g} s; "
                                "whatever had no result counts as failed")
            if run.oom_killed:
                warnings.append(f"{what}: the run ran out of memory (limit {limits.memory_mb} MiB)")
            if run.stdout_truncated or run.stderr_truncated:
                warnings.append(f"{what}: the run's output was over its cap and was truncated")
        tampering = grading.integrity.warning()
        return ([tampering] if tampering else []) + warnings + grading.warnings


@dataclass
class _Grading:
    """What one grading's outcomes add up to, besides the scores (folded in by Grader.grade)."""

    device: str
    seed: int
    runs: list[tuple[str, RunResult]] = field(default_factory=list)
    env: dict[str, str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # report key -> one entry per check
    complete: bool = True
    malformed: int = 0
    integrity: Integrity = field(default_factory=Integrity)

    def fold(self, kind: Kind, outcome: Outcome) -> None:
        self.runs += outcome.runs
        self.warnings += outcome.warnings
        self.integrity.add(outcome.evidence)
        self.complete &= outcome.complete
        self.malformed += outcome.malformed
        if outcome.env and not self.env:  # versions seen inside the sandbox, from the first run that said
            self.env = {k: str(outcome.env[k])[:ENV_VALUE_CAP] for k in ("python", "torch", "triton") if outcome.env.get(k)}
        if kind.section and outcome.section is not None:
            self.sections.setdefault(kind.section, []).append(outcome.section)
