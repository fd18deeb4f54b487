"""The grading pipeline: intake -> workspace -> collect (trusted) -> run (sandboxed) -> score -> report.

Candidate code runs only inside the sandbox. The host copies files in, reads one
size-capped results file out, and decides every verdict from the expected test list,
which comes from a separate sandbox run on the trusted starter code.
"""
from __future__ import annotations

import json
import platform
import random
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
from .checks import kernel_model as model_check
from .checks import latency as latency_check
from .checks import outputs as outputs_check
from .checks.probe_output import ProbeOutput, read_probe
from .checks.spec import load_spec
from .harness.wire import COLLECTION_HUNG, STARTED
from .integrity import Integrity, run_evidence, scan_evidence
from .scan import scan_submission
from .intake import Submission, intake
from .report import SCHEMA_ID, UNSANDBOXED, validate_report
from .results import RunResults, read_results
from .scoring import CheckScore, percent, score_pytest_check
from .sentinels import plant, tripped

HARNESS = Path(__file__).resolve().parent / "harness"
BOX = "/mlgrade"  # where things appear inside the sandbox
TAIL = 4000  # characters of sandbox stdout/stderr kept in the grader view
COLLECT_WALL_S = 180.0
LATENCY_MIN_WALL_S = 120.0
LATENCY_WALL_FACTOR = 4.0
COLLECT_TIMEOUT_FACTOR = 2.0  # collecting (importing the submission) may take this many per-test timeouts


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


def _reference_workspace(exercise: Exercise, dest: Path) -> None:
    """The reference over the starter at dest, made once per grading (model and latency checks share it)."""
    if not dest.exists():
        _overlay(exercise.starter, exercise.reference, dest)


class Grader:
    """Grades submissions with one backend; remembers each exercise's collected tests."""

    def __init__(self, backend: str = "auto", progress: Callable[[str], None] | None = None) -> None:
        try:
            self.backend = get_backend(backend)
        except BackendUnavailable as exc:
            raise InfraError(str(exc)) from None
        self.progress = progress or (lambda message: None)
        self._collected: dict[str, list[str]] = {}
        self._reference_models: dict[tuple[str, str], ProbeOutput] = {}

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
            results = read_results(out / "results.jsonl", key)
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
            if probe.first("started") is None and not _harness_started(run) and not (run.timed_out or run.oom_killed):
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
        """Grade one submission; return the grader-view report (validated against the schema)."""
        started, clock = _now(), time.monotonic()
        device = resolve_device(exercise, device)
        checks = [c for c in exercise.manifest.checks if c.device in ("any", device)]
        grading = _Grading(device=device, seed=seed)
        with tempfile.TemporaryDirectory(prefix="mlgrade-work-") as tmp:
            Path(tmp, "in").mkdir()
            submission = intake(submission_path, Path(tmp, "in"), exercise.manifest.required_files,
                                starter=exercise.starter)  # refuses paths that clash with the starter
            workspace = Path(tmp, "workspace")
            _overlay(exercise.starter, submission.root, workspace)
            label = f"{exercise.id}: {_short(submission_path)} ({self.backend.name}, {device})"
            grading.integrity.scan = scan_submission(submission.root)  # reads files, never runs them
            grading.integrity.add(scan_evidence(grading.integrity.scan))
            if any(c.kind == "pytest" for c in checks):
                self._grade_pytest(exercise, workspace, checks, grading, label, Path(tmp, "tests"))
            for check in checks:
                if check.kind == "outputs":
                    self._grade_outputs(exercise, workspace, check, grading, label)
            for check in checks:
                if check.kind == "model":
                    self._grade_model(exercise, workspace, Path(tmp, "reference"), check, grading, label)
            for check in checks:
                if check.kind == "latency":
                    self._grade_latency(exercise, workspace, Path(tmp, "reference"), check, grading, label)
        if grading.integrity.tampered:  # verdicts from the candidate's process are void (integrity.py)
            for check in checks:
                if check.kind == "pytest":
                    grading.scores[check.id] = grading.integrity.void(grading.scores[check.id])
        scores = [grading.scores[c.id] for c in checks]
        report = self._report(exercise, submission, scores, grading, started, time.monotonic() - clock)
        validate_report(report)
        return report

    def _grade_pytest(self, exercise: Exercise, workspace: Path, checks: list, grading: "_Grading",
                      label: str, tests_copy: Path) -> None:
        # Tests of checks left out on this device (a CUDA-only check on a CPU grading) are not run.
        expected = [n for n in self.collect(exercise) if any(c.owns(n) for c in checks)]
        # Sentinels that every submission fails are planted in a copy of the tests, fresh per grading.
        planted = plant(exercise.tests, tests_copy, expected, random.Random(secrets.randbits(64)))
        self.progress(f"{label}: running {len(expected)} tests")
        limits = exercise.manifest.limits
        config = {"mode": "run", "nodeids": list(planted.nodeids), "default_timeout": limits.test_timeout_s,
                  "collect_timeout": COLLECT_TIMEOUT_FACTOR * limits.test_timeout_s,
                  "timeouts": {p: c.timeout_s for c in checks if c.kind == "pytest" and c.timeout_s for p in c.tests}}
        run, results = self._run_harness(exercise, workspace, config, grading.device, grading.seed,
                                         tests=planted.tests)
        grading.add_run("pytest", run)
        grading.env = results.env
        grading.complete &= results.done
        grading.malformed += results.malformed_lines + results.unauthenticated_lines
        grading.integrity.add(run_evidence(tripped(planted, {n: t.outcome for n, t in results.tests.items()}),
                                           results.anomalies, results.unauthenticated_lines))
        results.tests = planted.real(results.tests)  # renamed tests' results under their real names
        hung = next((t.message for t in results.tests.values() if t.message.startswith(COLLECTION_HUNG)), None)
        if hung:  # the probes of later checks import the same code: they are judged without a run
            grading.import_hung = hung.removeprefix("not run: ")
        grading.warnings += self._result_warnings(expected, results)
        for check in checks:
            if check.kind == "pytest":
                grading.scores[check.id] = score_pytest_check(check, expected, results)

    def _spec(self, exercise: Exercise):
        return load_spec(exercise.root / str(exercise.manifest.spec))

    def _spec_path(self, exercise: Exercise) -> str:
        """The spec's path relative to the tests folder (mounted at /mlgrade/tests)."""
        return str((exercise.root / str(exercise.manifest.spec)).relative_to(exercise.tests))

    def _grade_outputs(self, exercise: Exercise, workspace: Path, check, grading: "_Grading", label: str) -> None:
        spec = self._spec(exercise)
        device = "cuda" if check.mode == "cuda" else "cpu"
        config = outputs_check.probe_config(check, spec, self._spec_path(exercise), device)
        env = {"TRITON_INTERPRET": "1"} if check.mode == "interpret" else None
        config["import_timeout"] = exercise.manifest.limits.test_timeout_s
        if grading.import_hung:  # it would hang again: judged without a run
            hung = ProbeOutput(lines=[{"event": "started"}, {"event": "import_error", "message": grading.import_hung}])
            grading.scores[check.id] = outputs_check.judge_outputs(check, spec, hung, workspace, device)
            return
        self.progress(f"{label}: {check.id}: {len(config['cases'])} cases, outputs compared on the host")
        def judge(probe: ProbeOutput, out: Path) -> CheckScore:
            grading.note_env(probe.first("env") or {})
            error = probe.first("import_error") or {}
            if error.get("hung") is True:
                grading.import_hung = str(error.get("message", ""))[:300]
            return outputs_check.judge_outputs(check, spec, probe, out, device)

        run, score = self._probe(exercise, workspace, config, device, grading.seed, judge, env)
        grading.add_run(check.id, run)
        grading.scores[check.id] = score

    def _blocked(self, check, grading: "_Grading") -> list[str]:
        """Required checks with a case that went wrong: "skipped" is an optional entry (a Triton
        kernel) that was not attempted, which costs that check's points but is not wrong."""
        return [r for r in check.requires if r in grading.scores
                and any(t.outcome not in ("passed", "skipped") for t in grading.scores[r].tests)]

    def _grade_model(self, exercise: Exercise, workspace: Path, reference_ws: Path, check,
                     grading: "_Grading", label: str) -> None:
        spec = self._spec(exercise)
        config = model_check.probe_config(spec, self._spec_path(exercise), check)
        env = {"TRITON_INTERPRET": "1", "TORCHDYNAMO_DISABLE": "1"}  # compiled code is modelled as eager ops
        empty = ProbeOutput()
        blocked = self._blocked(check, grading)
        if blocked:
            score, section = model_check.judge_model(check, spec, empty, empty, blocked)
        else:
            key = (exercise.version_hash, check.id)
            if key not in self._reference_models:  # deterministic: traced once per exercise version
                _reference_workspace(exercise, reference_ws)
                self.progress(f"{label}: {check.id}: tracing the reference's kernels (once per exercise version)")
                run_ref, probe_ref = self._probe(exercise, reference_ws, config, "cpu", 0, lambda p, out: p, env)
                grading.add_run(f"{check.id}-reference", run_ref)
                self._reference_models[key] = probe_ref
            self.progress(f"{label}: {check.id}: tracing the GPU path's kernels and building them for sm_90")
            run, (score, section) = self._probe(
                exercise, workspace, config, "cpu", grading.seed,
                lambda probe, out: model_check.judge_model(check, spec, probe, self._reference_models[key], []),
                env)
            grading.add_run(check.id, run)
        grading.scores[check.id] = score
        grading.model.append(section)

    def _grade_latency(self, exercise: Exercise, workspace: Path, reference_ws: Path, check,
                       grading: "_Grading", label: str) -> None:
        spec = self._spec(exercise)
        device = grading.device
        blocked = self._blocked(check, grading)
        config = latency_check.probe_config(spec, self._spec_path(exercise), spec.ENTRY, spec.BASELINE, device,
                                            check.threads, grading.seed)
        empty = ProbeOutput()
        if blocked:
            score, section = latency_check.judge_latency(check, spec, device, empty, reference_ws, empty, blocked)
        else:
            _reference_workspace(exercise, reference_ws)
            self.progress(f"{label}: {check.id}: timing the reference and the baseline in a clean process")
            env = dict(latency_check.ALLOCATOR_ENV)
            run_b, probe_b = self._probe(exercise, reference_ws, config, device, grading.seed, lambda p, out: p,
                                         env=env)
            grading.add_run(f"{check.id}-clean", run_b)
            self.progress(f"{label}: {check.id}: timing the candidate beside the baseline")
            # The candidate's run gets a few times what the clean run took plus the documented warm-up
            # allowance per case, not the whole wall budget: a submission that stalls the timing loop
            # must not hold the grader for long.
            warmup = len(config["cases"]) * 2 * config["warmup_limit_s"]
            wall = min(exercise.manifest.limits.wall_s,
                       max(LATENCY_MIN_WALL_S, LATENCY_WALL_FACTOR * run_b.wall_s) + warmup)
            run_a, (score, section) = self._probe(
                exercise, workspace, config, device, grading.seed,
                lambda probe, out: latency_check.judge_latency(check, spec, device, probe, out, probe_b, []),
                env=env, wall_s=wall)
            grading.add_run(check.id, run_a)
        grading.scores[check.id] = score
        grading.latency.append(section)

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
        if grading.latency:
            report["latency"] = grading.latency
        if grading.model:
            report["model"] = grading.model
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

    def _result_warnings(self, expected: list[str], results: RunResults) -> list[str]:
        warnings = []
        if not results.started:
            warnings.append("the results file was deleted or emptied during the run (by candidate code?); "
                            "tests without a result count as failed")
        elif not results.done:
            warnings.append("the test runner did not report the end of the run")
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
        unknown = set(results.tests) - set(expected)  # sentinels are gone: planted.real() maps them out
        if unknown:
            warnings.append(f"{len(unknown)} results for tests the exercise does not define were ignored")
        return warnings


@dataclass
class _Grading:
    """What one grading accumulates across its sandbox runs."""

    device: str
    seed: int
    scores: dict[str, CheckScore] = field(default_factory=dict)
    runs: list[tuple[str, RunResult]] = field(default_factory=list)
    env: dict[str, str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    latency: list[dict[str, Any]] = field(default_factory=list)
    model: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True
    malformed: int = 0
    integrity: Integrity = field(default_factory=Integrity)
    import_hung: str | None = None  # why the submission's import never finished, once a run saw it

    def add_run(self, what: str, run: RunResult) -> None:
        self.runs.append((what, run))

    def note_env(self, env: dict[str, Any]) -> None:
        """Versions seen inside the sandbox, from the first run that reported them."""
        if not self.env:
            self.env = {k: str(env[k])[:100] for k in ("python", "torch", "triton") if env.get(k)}
