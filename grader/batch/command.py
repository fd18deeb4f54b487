"""`mlgrade batch EXERCISE SOURCE --out DIR`: grade a round of submissions, resumably (docs/batch.md).

Everything is checked before anything is written: the exercise, SOURCE (grader/batch/sources.py),
--jobs, and DIR, which is a new or empty folder or a round folder of the same exercise (resumed).
Then, holding the round's lock: rows a dead batch left running go back to pending, leftover
sandboxes and half-written report folders are removed, the ledger is synced with SOURCE (a changed
key means graded again) and the loop (run.py) grades what is not final. Exit 0 when every
candidate is final and none is an infrastructure failure, 3 when some are (run it again to retry).
"""
from __future__ import annotations

import argparse
import os
import platform
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata, util
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import BadInput, InfraError
from ..exercises import PROJECT_ROOT, Exercise, home, load_exercise
from ..outdir import Protected, check_out, claim_out, one_line, shown
from .layout import CANDIDATE_VIEW, CANDIDATES, FINAL_STATES, LEDGER, read_round
from .sources import SourceEntry, content_hash, read_source

BACKEND_CHOICES = ["auto", "docker", "bwrap", "process"]
ENGINES = ["local", "ray"]
RETRY_DELAY_ENV = "MLGRADE_RETRY_DELAY"  # default of --retry-delay (tests make it small)
DEFAULT_RETRY_DELAY_S = 5.0
REASON_SHOWN = 160  # characters of a reason in the final table (the ledger keeps it whole)
RAY_MISSING = "--engine ray needs Ray: pip install -e '.[ray]'"

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


@dataclass(frozen=True)
class Plan:
    """What this batch will do, decided before anything is written."""
    exercise: Exercise
    exercise_ref: str          # what workers load: the id, or the absolute folder
    entries: list[SourceEntry]
    hashes: dict[str, str]     # candidate -> content hash
    folder: Path
    resume: bool
    backend: str
    image_id: str
    device: str
    jobs: int
    exclusive: bool
    timed_checks: list[str]


# -- checks -----------------------------------------------------------------------------------

def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _guards(exercise: Exercise, source: str, entries: list[SourceEntry]) -> list[Protected]:
    """What DIR must stay out of, and must not contain."""
    guards = [Protected(exercise.root, "the exercise folder"), Protected(exercise.reference, "the exercise's reference")]
    for root in dict.fromkeys([home(), PROJECT_ROOT]):
        guards += [Protected(root / "exercises", "mlgrade's exercises folder"),
                   Protected(root / "reference", "mlgrade's reference folder")]
    guards += [Protected(PROJECT_ROOT / "grader", "mlgrade's code"), Protected(PROJECT_ROOT / "sandbox", "mlgrade's code")]
    if os.path.isdir(source):
        guards.append(Protected(Path(source), "SOURCE"))  # a round inside SOURCE would become a candidate
    guards += [Protected(e.path, f"candidate {e.candidate}'s submission") for e in entries]
    return guards


def _check_round_folder(arg: str, exercise: Exercise, guards: list[Protected], seed: int, device: str) -> tuple[Path, bool]:
    """(DIR resolved, whether it is a round to resume); BadInput (one line) for anything else."""
    label = f"--out {shown(arg)}"
    real = Path(os.path.realpath(arg)) if arg.strip() and "\0" not in arg else None
    try:
        empty = real is None or not real.is_dir() or not any(real.iterdir())
    except OSError as exc:
        raise BadInput(f"{label}: cannot list the folder: {exc.strerror or exc}") from None
    if empty:
        return check_out(arg, protected=guards), False  # new or empty: the usual --out checks
    for guard in guards:
        folder = Path(os.path.realpath(guard.path))
        if _inside(real, folder) or _inside(folder, real):
            raise BadInput(f"{label}: overlaps {guard.what} ({shown(folder, 60)}); pick another folder")
    if not (real / LEDGER).is_file():
        raise BadInput(f"{label}: folder is not empty and is not a round folder (no {LEDGER}); "
                       "use a new or empty folder, or a round folder to resume")
    info = read_round(real).info
    if info.get("exercise") != exercise.id:
        raise BadInput(f"{label}: holds a round of exercise {shown(info.get('exercise') or '?', 40)}, "
                       f"not {exercise.id}; use a new folder")
    if info.get("seed", str(seed)) != str(seed):
        raise BadInput(f"{label}: this round was graded with --seed {shown(info['seed'], 20)}; "
                       "pass the same seed or use a new folder")
    if info.get("device", device) != device:
        raise BadInput(f"{label}: this round was graded on {shown(info['device'], 20)}, not {device}; "
                       "pass the same --device or use a new folder")
    if not os.access(real, os.W_OK | os.X_OK):
        raise BadInput(f"{label}: cannot write in the folder")
    return real, True


def resolve_backend(name: str) -> str:
    """The concrete backend: `auto` becomes the strongest one usable here."""
    if name != "auto":
        return name
    from sandbox import available_backends
    for backend, reason in available_backends().items():
        if reason is None:
            return backend
    raise InfraError("no sandbox backend can run here (see mlgrade grade --backend)")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def environment_id(backend: str, device: str) -> str:
    """What the ledger key calls the image id: the Docker image's id, or for bwrap and process the
    backend with the Python and torch versions that run the submission. An image that cannot be
    inspected gets a name of its own (its gradings fail and are retried as infrastructure)."""
    if backend == "docker":
        from sandbox.docker_backend import connect, default_image
        image = default_image(gpu=device == "cuda")
        try:
            return "docker:" + str(connect().api.inspect_image(image)["Id"])
        except Exception:  # noqa: BLE001 - no engine or no image: the workers report it, with retries
            return f"docker:{image}:unavailable"
    return f"{backend}:python-{platform.python_version()}:torch-{_version('torch')}"


def _mem_available_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def clamp_jobs(jobs: int, memory_mb: int) -> tuple[int, str | None]:
    """jobs within this machine's cores and available memory (jobs x the exercise's memory limit);
    the line saying why when it had to be lowered. The exercise's `cpus` is a quota, not a
    reservation, so it does not count here."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    available = _mem_available_mb()
    fits = max(1, available // memory_mb) if available is not None else jobs
    allowed = min(jobs, cores, fits)
    if allowed == jobs:
        return jobs, None
    why = []
    if cores < jobs:
        why.append(f"{cores} core{'s' if cores != 1 else ''}")
    if available is not None and available < memory_mb:
        why.append(f"only {available} MiB of memory available, less than one grading's limit of {memory_mb} MiB")
    elif fits < jobs:
        why.append(f"{available} MiB of available memory, room for {fits} grading{'s' if fits != 1 else ''} "
                   f"of {memory_mb} MiB (the exercise's memory limit)")
    return allowed, f"--jobs {jobs} lowered to {allowed}: this machine has {' and '.join(why)}"


def _timed_checks(exercise: Exercise, device: str) -> list[str]:
    from ..checks import KINDS
    return [c.id for c in exercise.manifest.checks if KINDS[c.kind].measured and c.device in ("any", device)]


def make_plan(args: argparse.Namespace) -> tuple[Plan, list[str]]:
    """Every check before anything is written; returns the plan and lines to print."""
    exercise = load_exercise(args.exercise)
    if args.jobs < 1:
        raise BadInput(f"--jobs {args.jobs}: must be at least 1")
    if args.retries < 0:
        raise BadInput(f"--retries {args.retries}: must be 0 or more")
    if args.similarity is not None and not 0.0 <= args.similarity <= 1.0:
        raise BadInput(f"--similarity {args.similarity:g}: must be between 0 and 1")
    if args.retry_delay < 0:
        raise BadInput(f"--retry-delay {args.retry_delay:g}: must be 0 or more")
    entries = read_source(args.source)
    unknown = set(args.regrade) - {e.candidate for e in entries} - {"all"}
    if unknown:
        raise BadInput(f"--regrade {shown(sorted(unknown)[0], 40)}: no such candidate in SOURCE")
    from ..pipeline import resolve_device
    device = resolve_device(exercise, args.device)
    folder, resume = _check_round_folder(args.out, exercise, _guards(exercise, args.source, entries), args.seed, device)
    if args.engine == "ray":
        if util.find_spec("ray") is None:
            raise BadInput(RAY_MISSING)
        if util.find_spec("grader.batch.engine_ray") is None:
            raise BadInput("--engine ray: this install of mlgrade has no Ray engine (grader/batch/engine_ray.py)")
    lines: list[str] = []
    jobs = args.jobs
    if args.engine == "local":
        jobs, clamped = clamp_jobs(args.jobs, exercise.manifest.limits.memory_mb)
        if clamped:
            lines.append(clamped)
    backend = resolve_backend(args.backend)
    hashes = {e.candidate: content_hash(e) for e in entries}
    by_id = home() / "exercises" / exercise.id
    ref = exercise.id if by_id.resolve() == exercise.root else str(exercise.root)
    timed = _timed_checks(exercise, device)
    image_id = environment_id(backend, device)
    if resume:
        _check_resumed_environment(folder, args.backend, backend, image_id)
    plan = Plan(exercise=exercise, exercise_ref=ref, entries=entries, hashes=hashes, folder=folder, resume=resume,
                backend=backend, image_id=image_id, device=device, jobs=jobs,
                exclusive=bool(timed), timed_checks=timed)
    return plan, lines


def _check_resumed_environment(folder: Path, asked: str, backend: str, image_id: str) -> None:
    """A resumed round keeps its backend, and is not touched while its image cannot be looked at: either
    would change every candidate's key, and a changed key discards the candidate's report."""
    info = read_round(folder).info
    was = info.get("backend")
    if was and was != backend:
        why = " (is the Docker engine up?)" if was == "docker" and asked == "auto" else ""
        raise BadInput(f"--out {shown(folder)}: this round was graded on the {shown(was, 20)} backend; --backend "
                       f"{asked} is {backend} here{why}; pass --backend {shown(was, 20)} or use a new folder")
    if image_id.endswith(":unavailable"):
        raise InfraError(f"the sandbox image ({image_id.removeprefix('docker:').removesuffix(':unavailable')}) "
                         f"cannot be inspected: is the Docker engine up? The round in {shown(folder)} was left as "
                         "it was; run the same command again once it answers")


# -- the command -------------------------------------------------------------------------------

def _make_engine(args: argparse.Namespace, plan: Plan) -> Any:
    if args.engine == "ray":
        try:
            from .engine_ray import RayEngine
        except ModuleNotFoundError as exc:
            if exc.name == "ray" or (exc.name or "").startswith("ray."):
                raise BadInput(RAY_MISSING) from None
            raise InfraError(f"--engine ray: this install has no Ray engine ({exc.name})") from None
        return RayEngine(slots=plan.jobs, address=args.ray_address, exercise_home=str(home().resolve()))
    from .engine_local import LocalEngine
    return LocalEngine(plan.jobs, log_dir=plan.folder / "logs")


def _prepare(plan: Plan, args: argparse.Namespace, say: Any) -> tuple[Any, Any, list[tuple[str, str, str]]]:
    """Under the round's lock: recover, sweep, sync. Returns (lock, ledger, todo)."""
    from .ledger import Ledger, RoundLock
    from .run import candidate_folder, sweep_partials
    lock = RoundLock(plan.folder)
    ledger = Ledger(plan.folder)
    recovered = ledger.recover(os.getpid())
    if recovered:
        say(f"{recovered} grading{'s' if recovered != 1 else ''} left running by a stopped batch will run again")
    sweep_partials(plan.folder)
    if plan.backend == "docker":
        try:
            from sandbox.docker_backend import connect, sweep
            removed = sweep(connect())
            if removed:
                say(f"removed {len(removed)} sandbox container{'s' if len(removed) != 1 else ''} left by stopped gradings")
        except Exception:  # noqa: BLE001 - no engine: the gradings report it
            pass
    info = ledger.info()
    ledger.set_info({"exercise": plan.exercise.id, "exercise_version": plan.exercise.version_hash,
                     "backend": plan.backend, "image_id": plan.image_id, "device": plan.device,
                     "seed": str(args.seed), "source": os.path.abspath(args.source),
                     "created_at": info.get("created_at") or datetime.now(timezone.utc).isoformat(timespec="seconds")})
    regrade = {e.candidate for e in plan.entries} if "all" in args.regrade else set(args.regrade)
    version = plan.exercise.version_hash
    stale = ledger.sync([(e.candidate, e.given, plan.hashes[e.candidate], version, plan.image_id) for e in plan.entries],
                        regrade)
    from ..cleanup import remove_tree
    for candidate in stale:  # their reports belong to an older key
        remove_tree(candidate_folder(plan.folder, candidate))
    rows = ledger.rows()
    gone = len(set(rows) - {e.candidate for e in plan.entries})
    if gone:
        say(f"{gone} candidate{'s' if gone != 1 else ''} of this round {'are' if gone != 1 else 'is'} not in SOURCE "
            "any more: kept in the ledger as they are, not graded")
    todo = [(e.candidate, str(e.path), rows[e.candidate].key) for e in plan.entries
            if rows[e.candidate].state == "pending"]
    if version != info.get("exercise_version", version):
        say(f"the exercise {plan.exercise.id} changed since this round was last graded: its candidates are graded again")
    return lock, ledger, todo


def _state_text(state: str) -> Text:
    colour = {"graded": "green", "candidate_failure": "yellow", "infra_failure": "red"}.get(state, "")
    return Text(state.replace("_", " "), style=colour)


def _print_table(plan: Plan, rows: dict[str, Any]) -> None:
    table = Table("candidate", "state", "score", "reason", title=f"{plan.exercise.id}: {len(plan.entries)} candidates")
    for entry in plan.entries:
        row = rows[entry.candidate]
        score = f"{row.percent:.1f}%" if row.percent is not None else "—"
        reason = one_line(row.reason)
        reason = reason if len(reason) <= REASON_SHOWN else reason[:REASON_SHOWN - 1] + "…"
        table.add_row(Text(entry.candidate), _state_text(row.state), Text(score), Text(reason))
    out.print(table)


def cmd_batch(args: argparse.Namespace) -> int:
    from .progress import BatchProgress
    from .run import RoundSettings, finish_round, grade_candidates
    plan, lines = make_plan(args)

    def say(text: str) -> None:
        err.print(one_line(text), markup=False, soft_wrap=True)

    for line in lines:
        say(line)
    claim = nullcontext() if plan.resume else claim_out(args.out, protected=_guards(plan.exercise, args.source,
                                                                                       plan.entries))
    with claim:  # a new folder that fails here is removed again (claim_out)
        lock, ledger, todo = _prepare(plan, args, say)
    final = len(plan.entries) - len(todo)
    say(f"{plan.exercise.id}: {len(plan.entries)} candidates, {len(todo)} to grade"
        f"{f', {final} already final' if final else ''}; {plan.jobs} job{'s' if plan.jobs != 1 else ''} "
        f"on the {args.engine} engine, {plan.backend} backend, {plan.device}; round folder {shown(plan.folder)}")
    if plan.exclusive and todo:
        say(f"{plan.exercise.id} has timed checks ({', '.join(plan.timed_checks)}): each grading runs alone, "
            "never beside another, so no timing shares the machine")
    settings = RoundSettings(folder=plan.folder, exercise=plan.exercise_ref, exercise_home=str(home().resolve()),
                             backend=plan.backend, device=plan.device, seed=args.seed, retries=args.retries,
                             retry_delay_s=args.retry_delay, exclusive=plan.exclusive,
                             needs_gpu=plan.device == "cuda")
    try:
        try:
            if todo:
                engine = _make_engine(args, plan)
                with BatchProgress(err, total=len(todo), live=err.is_terminal) as progress:
                    grade_candidates(settings, ledger, engine, todo, progress)  # closes the engine
            rows = ledger.rows()
        finally:
            ledger.close()
        sources = {e.candidate: e.path for e in plan.entries}
        for line in finish_round(plan.folder, plan.exercise, args.similarity, sources):  # still holding the round
            say(line)
    finally:
        lock.release()
    _print_table(plan, rows)
    out.print(f"reports: {shown(plan.folder / CANDIDATES, 120)}/<candidate>/report.json and report.md (grader view), "
              f"<candidate>/{CANDIDATE_VIEW}/ (candidate view); ledger: {shown(plan.folder / LEDGER, 120)}",
              markup=False, emoji=False, soft_wrap=True)
    states = [rows[e.candidate].state for e in plan.entries]
    infra = states.count("infra_failure")
    out.print(f"{plan.exercise.id}: {states.count('graded')} graded, {states.count('candidate_failure')} candidate "
              f"failures, {infra} infrastructure failures", markup=False, emoji=False, soft_wrap=True)
    if infra or any(s not in FINAL_STATES for s in states):
        say(f"mlgrade: {infra} candidate{'s' if infra != 1 else ''} not graded for infrastructure reasons; "
            "run the same command again to retry them")
        return 3
    return 0


def _retry_delay_default() -> float:
    try:
        return float(os.environ.get(RETRY_DELAY_ENV, DEFAULT_RETRY_DELAY_S))
    except ValueError:
        return DEFAULT_RETRY_DELAY_S


def add_parser(sub: Any) -> None:
    batch = sub.add_parser("batch", help="grade a round of submissions into a round folder (resumable)",
                           description="Grade every submission in SOURCE (a folder with one folder or archive "
                                       "per candidate, or a CSV roster with columns candidate,path) into DIR. "
                                       "Run the same command again to resume after a stop or to pick up changes.")
    batch.add_argument("exercise")
    batch.add_argument("source", help="folder of submissions, or a CSV roster (candidate,path)")
    batch.add_argument("--out", required=True, metavar="DIR",
                       help="round folder: new or empty, or an earlier round of the same exercise to resume")
    batch.add_argument("--jobs", type=int, default=1, help="gradings at once (lowered to the cores and memory here)")
    batch.add_argument("--engine", choices=ENGINES, default="local",
                       help="local worker processes, or a Ray cluster (pip install -e '.[ray]')")
    batch.add_argument("--ray-address", default=None,
                       help="Ray cluster to join (default: $RAY_ADDRESS, else a local instance)")
    batch.add_argument("--backend", choices=BACKEND_CHOICES, default="auto")
    batch.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    batch.add_argument("--seed", type=int, default=0)
    batch.add_argument("--retries", type=int, default=2,
                       help="retries of an infrastructure failure per candidate (candidate failures never are)")
    batch.add_argument("--retry-delay", type=float, default=_retry_delay_default(), metavar="SECONDS",
                       help=f"first retry's delay, doubled each time (default {DEFAULT_RETRY_DELAY_S:g}, "
                            f"or ${RETRY_DELAY_ENV})")
    batch.add_argument("--regrade", action="append", default=[], metavar="CANDIDATE",
                       help="grade this candidate again even if unchanged (repeatable; 'all' for every one)")
    batch.add_argument("--similarity", type=float, default=None, metavar="SHARE",
                       help="flag pairs sharing at least this share of their code beyond the starter "
                            "(0-1; default: grader.similarity's, see docs/similarity.md)")
    batch.set_defaults(func=cmd_batch)
