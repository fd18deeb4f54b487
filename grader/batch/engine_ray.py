"""The Ray engine (`mlgrade batch --engine ray`): each grading is one Ray task running `grade_one`.

No shared filesystem is assumed. The batch checks the submission with intake (a refused one is a
candidate failure at once, no task started), puts its bytes in the object store (an archive as it
is, a folder as a tar.gz of intake's clean copy) and starts a task with what the exercise asks for:
`num_cpus` = limits.cpus and `memory` = limits.memory_mb (both capped at the largest grading node,
or the task would never be scheduled), `num_gpus=1` for a CUDA grading. On the node the task
writes the submission into a scratch folder, grades it with `grade_one` into a scratch out folder
(the node's own install of mlgrade and its exercises, under `exercise_home`; a node whose copy of
the exercise differs from the batch's is an infrastructure failure) and returns the report files
as data; the batch points them at the submission's own path and writes them into task.out_dir in
one rename (worker.write_outputs).

Timed checks: every grading node has one unit of the custom resource NODE_RESOURCE. A task with
a timed check (task.exclusive) takes the whole unit, any other a sliver of it, so Ray never runs
anything beside a timed grading on its node (docs/scaling.md).

Failures: Ray never retries a grading (max_retries=0; the batch loop owns retries and the ledger).
A task that raises, a worker that dies, a node lost, a result lost, a cluster gone: an
infra_failure outcome, reported by `finished`.

With no address (nor RAY_ADDRESS), or "local", the engine starts a local instance through
grader/batch/ray_local.py, which makes sure nothing of it outlives the batch, `kill -9` included.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import signal
import socket
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import ray
from ray import exceptions as rex

from sandbox.docker_backend import boot_id, process_start

from ..cleanup import remove_tree
from ..errors import BadInput, InfraError
from ..outdir import one_line
from .ray_local import NODE_RESOURCE, OWNER, SCRATCH_ENV, LocalRay
from .tasks import GradeOutcome, GradeTask, Result
from .worker import REASON_MAX


@dataclass(frozen=True)
class RayEngineSettings:
    object_store_mb: int = 128        # the local instance's object store (a submission is at most ~68 MiB)
    shared_share: float = 0.001       # of NODE_RESOURCE, taken by a grading without timed checks
    cancel_wait_s: float = 10.0       # close(): how long cancelled tasks may take to be reported ended
    result_max_bytes: int = 64 << 20  # report files a node may send back
    node_info_ttl_s: float = 5.0      # how long the cluster's node list is reused


SETTINGS = RayEngineSettings()
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".tar")
SCRATCH_PREFIX = "mlgrade-ray-task-"
_MiB = 1 << 20
_SAFE_PART = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _short(text: str) -> str:
    text = one_line(text)
    return text if len(text) <= REASON_MAX else text[:REASON_MAX - 1] + "…"


# -- the node's side ---------------------------------------------------------------------------

def _node_exercise(exercise: str, exercise_home: str) -> Any:
    """The exercise on this node: the batch's path when this node has it, else by id under exercise_home."""
    os.environ["MLGRADE_HOME"] = exercise_home
    from ..exercises import load_exercise
    return load_exercise(exercise)


def _sweep_scratch(base: Path) -> None:
    """Remove the scratch folders of tasks whose worker is gone (killed, or cancelled by force)."""
    for folder in base.glob(f"{SCRATCH_PREFIX}*"):
        try:
            if folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            try:
                record = json.loads((folder / OWNER).read_text())
                gone = record.get("boot") != boot_id() or process_start(int(record["pid"])) != record.get("start")
            except (OSError, ValueError, KeyError, TypeError):
                gone = time.time() - folder.stat().st_mtime > 3600  # no record: being made, or long dead
            if gone:
                remove_tree(folder)
        except OSError:  # removed meanwhile by another task, or not ours to remove
            continue


def grade_on_node(payload: bytes, kind: str, suffix: str, task: GradeTask, exercise_id: str, version: str,
                  exercise_home: str) -> dict[str, Any]:
    """The Ray task: unpack the submission, grade it with grade_one, return outcome and report files.

    Everything the grading writes on the node (the submission, the reports, every temporary folder
    of the grader) is under one scratch folder that records this worker's pid: removed at the end,
    or by the next task on the node should this worker be killed first."""
    from .worker import grade_one
    host = socket.gethostname()
    base = Path(os.environ.get(SCRATCH_ENV) or tempfile.gettempdir())
    _sweep_scratch(base)
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=base))
    me = os.getpid()
    (scratch / OWNER).write_text(json.dumps({"pid": me, "start": process_start(me), "boot": boot_id()}))
    saved_tempdir = tempfile.tempdir
    tempfile.tempdir = str(scratch / "tmp")
    try:
        (scratch / "tmp").mkdir()
        ref = task.exercise if os.path.isabs(task.exercise) and os.path.isdir(task.exercise) else exercise_id
        try:
            exercise = _node_exercise(ref, exercise_home)
        except BadInput as exc:
            return {"error": f"node {host}: the exercise is not installed there ({exc})"}
        if exercise.version_hash != version:
            return {"error": f"node {host}: its copy of exercise {exercise_id} is version "
                             f"{exercise.version_hash[:12]}, the batch's is {version[:12]}: install the same "
                             "mlgrade and exercises on every node"}
        submission = scratch / f"submission{suffix}"
        if kind == "tree":
            submission.mkdir()
            with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4
                tar.extractall(submission, **safe)
        else:
            submission.write_bytes(payload)
        del payload
        gpus = [str(g) for g in ray.get_gpu_ids()] if task.needs_gpu else []
        if gpus and all(g.isdigit() for g in gpus):  # the GPU Ray gave this task, and only that one, for Docker
            os.environ["MLGRADE_GPUS"] = ",".join(gpus)
        out = scratch / "out"
        outcome = grade_one(replace(task, submission=str(submission), out_dir=str(out), exercise=ref,
                                    exercise_home=exercise_home))
        files = {}
        if out.is_dir():
            for path in sorted(p for p in out.rglob("*") if p.is_file() and not p.is_symlink()):
                files[path.relative_to(out).as_posix()] = path.read_text(encoding="utf-8")
        return {"outcome": asdict(outcome), "files": files, "node_submission": str(submission), "host": host}
    finally:
        tempfile.tempdir = saved_tempdir
        remove_tree(scratch)


_GRADE_ON_NODE = ray.remote(grade_on_node)


# -- the batch's side --------------------------------------------------------------------------

@dataclass
class _Running:
    task: GradeTask
    started: float
    payload: Any  # the ObjectRef of the submission's bytes, freed with the task


def _payload(task: GradeTask, exercise: Any) -> tuple[str, str, bytes]:
    """(kind, suffix, bytes) for the node: an archive as it is, a folder as a tar.gz of intake's
    clean copy. Raises BadInput (with intake's one line) for a submission intake refuses."""
    from ..intake import MAX_ARCHIVE_BYTES, intake
    source = Path(task.submission)
    with tempfile.TemporaryDirectory(prefix="mlgrade-ray-intake-") as tmp:
        checked = intake(source, Path(tmp), exercise.manifest.required_files, starter=exercise.starter)
        real = Path(os.path.realpath(source))
        if real.is_dir():
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
                for entry in sorted(Path(tmp).iterdir()):
                    tar.add(entry, arcname=entry.name)
            return "tree", "", buffer.getvalue()
    name = real.name.lower()
    suffix = next(s for s in ARCHIVE_SUFFIXES if name.endswith(s))
    with open(real, "rb") as f:
        data = f.read(MAX_ARCHIVE_BYTES + 1)
    if hashlib.sha256(data).hexdigest() != checked.sha256:
        raise InfraError(f"{task.submission}: the archive changed while it was read")
    return "archive", suffix, data


def _fix_source(files: dict[str, str], node_path: str, source: str) -> dict[str, str]:
    """Reports name the node's temporary copy of the submission: name the batch's path instead."""
    fixed = {}
    for rel, text in files.items():
        if rel.endswith(".json"):
            data = json.loads(text)
            if isinstance(data.get("submission"), dict) and data["submission"].get("source") == node_path:
                data["submission"]["source"] = source
            text = json.dumps(data, indent=2) + "\n"
        elif rel.endswith(".html"):
            from markupsafe import escape
            text = text.replace(node_path, str(escape(source)))
        else:
            text = text.replace(node_path, source)
        fixed[rel] = text
    return fixed


def _check_files(files: Any) -> dict[str, str]:
    """The node's report files, refused unless plain relative names of text within the size cap."""
    if not isinstance(files, dict):
        raise ValueError("report files are not a mapping")
    total = 0
    for rel, text in files.items():
        parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
        if (not parts or len(parts) > 3 or any(p.startswith(".") or not set(p) <= _SAFE_PART for p in parts)
                or not isinstance(text, str)):
            raise ValueError(f"unexpected report file name {rel!r}")
        total += len(text)
    if total > SETTINGS.result_max_bytes:
        raise ValueError(f"report files over {SETTINGS.result_max_bytes} bytes")
    return files


def _ray_failure(exc: BaseException) -> str:
    """One line for why a Ray task gave no result."""
    if isinstance(exc, rex.TaskCancelledError):
        return "the grading was cancelled"
    if isinstance(exc, rex.OutOfMemoryError):
        return "Ray's memory monitor killed the grading's worker (its node ran low on memory)"
    if isinstance(exc, rex.NodeDiedError):
        return "the Ray node running the grading was lost"
    if isinstance(exc, (rex.WorkerCrashedError, rex.LocalRayletDiedError)):
        return "the Ray worker running the grading died"
    if isinstance(exc, rex.ObjectLostError):
        return f"the grading's result was lost ({type(exc).__name__})"
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
        what = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc).strip().splitlines()[-1]
        return f"the grading task raised {what}"
    text = str(exc).strip().splitlines()
    return f"Ray: {type(exc).__name__}{': ' + text[0] if text else ''}"


class RayEngine:
    """Engine (grader/batch/tasks.py) on a Ray cluster, or on a local instance started for the batch."""

    def __init__(self, slots: int, address: str | None, exercise_home: str) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.exercise_home = exercise_home
        self._running: dict[Any, _Running] = {}
        self._ready: list[GradeOutcome] = []
        self._exercises: dict[tuple[str, str], Any] = {}
        self._nodes: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self._local: LocalRay | None = None
        self._env: dict[str, str | None] = {}
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        if ray.is_initialized():
            raise InfraError("Ray is already initialised in this process; one Ray engine at a time")
        if address == "local":
            self._local = LocalRay.start(num_cpus=os.cpu_count() or 1, object_store_bytes=SETTINGS.object_store_mb * _MiB)
            self._set_env({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self._local.token})
            address = self._local.address
        self.address = address
        self._connect(address)
        if not self._grading_nodes():
            self.close()
            raise InfraError(f"no node of the Ray cluster at {address} has the {NODE_RESOURCE} resource: start each "
                             f"grading node with `ray start ... --resources='{{\"{NODE_RESOURCE}\": 1}}'` "
                             "(docs/scaling.md)")

    # -- connection ------------------------------------------------------------------------
    def _set_env(self, values: dict[str, str | None]) -> None:
        """Set environment variables for Ray in this process; close() puts the old values back."""
        for name, value in values.items():
            self._env.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        try:  # Ray caches its authentication mode and token per process
            from ray._raylet import AuthenticationTokenLoader, Config
            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()
        except (ImportError, AttributeError):
            pass

    def _connect(self, address: str) -> None:
        handler = signal.getsignal(signal.SIGTERM)  # ray.init replaces it with sys.exit: keep the CLI's
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, namespace="mlgrade",
                     configure_logging=True)
        except Exception as exc:  # noqa: BLE001 - connection refused, authentication, version mismatch ...
            self.close()
            raise InfraError(f"cannot connect to the Ray cluster at {address}: "
                             f"{_short(f'{type(exc).__name__}: {exc}')}") from None
        finally:
            if handler is not None:
                signal.signal(signal.SIGTERM, handler)

    def _grading_nodes(self) -> list[dict[str, Any]]:
        """Alive nodes with NODE_RESOURCE, their total resources (refreshed every few seconds)."""
        when, nodes = self._nodes
        if time.monotonic() - when > SETTINGS.node_info_ttl_s or not nodes:
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(NODE_RESOURCE)]
            self._nodes = (time.monotonic(), nodes)
        return nodes

    @property
    def local_folder(self) -> Path | None:
        """The local instance's folder (Ray's session files, the tasks' scratch folders), else None."""
        return self._local.folder if self._local is not None else None

    @property
    def local_pids(self) -> list[int]:
        """The local instance's processes (empty when connected to a cluster); for tests and diagnostics."""
        return self._local.pids() if self._local is not None else []

    # -- Engine ----------------------------------------------------------------------------
    def _exercise(self, task: GradeTask) -> Any:
        key = (task.exercise, task.exercise_home)
        if key not in self._exercises:
            from ..exercises import load_exercise
            previous = os.environ.get("MLGRADE_HOME")
            os.environ["MLGRADE_HOME"] = task.exercise_home
            try:
                self._exercises[key] = load_exercise(task.exercise)
            finally:
                if previous is None:
                    os.environ.pop("MLGRADE_HOME", None)
                else:
                    os.environ["MLGRADE_HOME"] = previous
        return self._exercises[key]

    def _options(self, task: GradeTask, exercise: Any) -> dict[str, Any]:
        nodes = self._grading_nodes()
        if task.needs_gpu:
            nodes = [n for n in nodes if n.get("GPU", 0) >= 1]
            if not nodes:
                raise InfraError("no grading node of the Ray cluster has a GPU: start GPU nodes with "
                                 f"`ray start ... --num-gpus=N --resources='{{\"{NODE_RESOURCE}\": 1}}'`")
        limits = exercise.manifest.limits
        cpus = min(float(limits.cpus), max(n.get("CPU", 0.0) for n in nodes))
        memory = min(limits.memory_mb * _MiB, max(int(n.get("memory", 0)) for n in nodes))
        share = 1.0 if task.exclusive else SETTINGS.shared_share
        return {"num_cpus": cpus, "memory": memory or None, "num_gpus": 1 if task.needs_gpu else 0,
                "resources": {NODE_RESOURCE: share}, "max_retries": 0, "retry_exceptions": False,
                "name": f"mlgrade:{task.candidate}"}

    def _outcome(self, task: GradeTask, result: Result, reason: str, started: float) -> GradeOutcome:
        return GradeOutcome(candidate=task.candidate, key=task.key, attempt=task.attempt, result=result,
                            reason=_short(reason), percent=None, duration_s=round(time.monotonic() - started, 3))

    def start(self, task: GradeTask) -> None:
        started = time.monotonic()
        try:  # the exercise and the cluster: never the candidate's problem
            exercise = self._exercise(task)
            options = self._options(task, exercise)
        except (BadInput, InfraError, OSError) as exc:
            self._ready.append(self._outcome(task, "infra_failure", str(exc), started))
            return
        try:
            kind, suffix, data = _payload(task, exercise)
        except BadInput as exc:  # the submission was refused: a candidate failure, as grade_one says it
            self._ready.append(self._outcome(task, "candidate_failure", str(exc), started))
            return
        except (InfraError, OSError) as exc:
            self._ready.append(self._outcome(task, "infra_failure", str(exc), started))
            return
        try:
            payload = ray.put(data)
            del data
            ref = _GRADE_ON_NODE.options(**options).remote(
                payload, kind, suffix, task, exercise.id, exercise.version_hash, self.exercise_home)
        except Exception as exc:  # noqa: BLE001 - the cluster went away, the object store is full ...
            self._ready.append(self._outcome(task, "infra_failure", _ray_failure(exc), started))
            return
        self._running[ref] = _Running(task=task, started=started, payload=payload)

    def finished(self, timeout: float) -> list[GradeOutcome]:
        outcomes, self._ready = self._ready, []
        if not self._running:
            if not outcomes:
                time.sleep(max(0.0, timeout))
            return outcomes
        refs = list(self._running)
        try:
            ready, rest = ray.wait(refs, num_returns=1, timeout=0 if outcomes else max(0.0, timeout))
            if ready and rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
        except Exception as exc:  # noqa: BLE001 - the connection to the cluster is gone: every task is lost
            ready = refs
            lost = _ray_failure(exc)
            for ref in ready:
                running = self._running.pop(ref)
                outcomes.append(self._outcome(running.task, "infra_failure", lost, running.started))
            return outcomes
        for ref in ready:
            outcomes.append(self._collect(ref))
        return outcomes

    def _collect(self, ref: Any) -> GradeOutcome:
        running = self._running.pop(ref)
        task = running.task
        try:
            answer = ray.get(ref, timeout=60)
        except Exception as exc:  # noqa: BLE001 - every way a Ray task can fail
            return self._outcome(task, "infra_failure", _ray_failure(exc), running.started)
        try:
            if "error" in answer:
                return self._outcome(task, "infra_failure", str(answer["error"]), running.started)
            outcome = GradeOutcome(**answer["outcome"])
        except (KeyError, TypeError) as exc:  # a node running another mlgrade: never a traceback in the batch
            return self._outcome(task, "infra_failure", f"a node answered in an unknown format ({exc!r}): install "
                                                        "the same mlgrade on every node", running.started)
        try:
            files = _check_files(answer.get("files"))
            if files:
                from .worker import write_outputs
                write_outputs(Path(task.out_dir), _fix_source(files, answer["node_submission"], task.submission))
        except (OSError, ValueError) as exc:
            return self._outcome(task, "infra_failure", f"cannot write the reports from node {answer.get('host')}: "
                                                        f"{exc}", running.started)
        return outcome

    def close(self) -> None:
        """Cancel what still runs (its worker is killed: bwrap dies with it, a container is swept and
        its files removed by the next task on that node, or at once by a local instance's sitter),
        disconnect, and stop the local instance if this engine started one."""
        try:
            if self._running and ray.is_initialized():
                refs = list(self._running)
                try:
                    done, left = ray.wait(refs, num_returns=len(refs), timeout=0)
                    for ref in left:  # never a finished one: Ray 2.60's owner aborts on some such races
                        ray.cancel(ref, force=True)
                    ray.wait(left, num_returns=len(left), timeout=SETTINGS.cancel_wait_s)
                except Exception:  # noqa: BLE001 - the cluster is gone: nothing left to cancel
                    pass
            self._running.clear()
            if ray.is_initialized():
                ray.shutdown()
        finally:
            if self._local is not None:
                self._local.stop()
                self._local = None
            for name, value in self._env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._env.clear()
